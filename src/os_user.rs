//! Looking up operating-system users (the passwd database), thread-safely: tests start
//! servers from several threads at once, so only the `_r` variants are used.

/// One passwd entry, copied out of libc's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// The user with this name, if any.
pub fn by_name(name: &str) -> Option<OsUser> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam_r is called with a valid C string and the pointers `lookup` gives.
    lookup(|pwd, buf, len, result| unsafe {
        libc::getpwnam_r(cname.as_ptr(), pwd, buf, len, result)
    })
}

/// The user this process runs as (effective uid).
pub fn current() -> Option<OsUser> {
    // SAFETY: geteuid has no preconditions; getpwuid_r gets the pointers `lookup` gives.
    let uid = unsafe { libc::geteuid() };
    lookup(|pwd, buf, len, result| unsafe { libc::getpwuid_r(uid, pwd, buf, len, result) })
}

type Result = *mut *mut libc::passwd;

fn lookup(
    call: impl FnOnce(*mut libc::passwd, *mut libc::c_char, usize, Result) -> libc::c_int,
) -> Option<OsUser> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value for the _r functions to fill in.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = call(&mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points into `buf`, which is still alive here.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
        .to_string_lossy()
        .into_owned();
    Some(OsUser {
        name,
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_user_and_root_by_name() {
        let me = current().expect("the current user has a passwd entry");
        assert_eq!(by_name(&me.name), Some(me.clone()));
        assert_eq!(by_name("root").map(|u| u.uid), Some(0));
        assert_eq!(by_name("no-such-user-carve"), None);
        assert_eq!(by_name("nul\0name"), None);
    }
}
