//! A `newc` (SVR4, no CRC) cpio writer: what the kernel unpacks as an initramfs. Pure: builds bytes.
//! Owners are root, mtimes 0, inode numbers sequential, so the same inputs give the same archive.

#[derive(Default)]
pub struct Cpio {
    buf: Vec<u8>,
    next_ino: u32,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

impl Cpio {
    pub fn new() -> Cpio {
        Cpio { buf: Vec::new(), next_ino: 1 }
    }

    pub fn dir(&mut self, path: &str) {
        self.entry(path, S_IFDIR | 0o755, 2, (0, 0), b"");
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, S_IFREG | (mode & 0o7777), 1, (0, 0), data);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | (mode & 0o7777), 1, (major, minor), b"");
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let name = path.trim_start_matches('/');
        let ino = self.next_ino;
        self.next_ino += 1;
        let fields = [ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.next_ino = 0;
        self.entry("TRAILER!!!", 0, 1, (0, 0), b"");
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let mut c = Cpio::new();
        c.file("/init", 0o755, b"#!/bin/sh\n");
        let b = c.finish();
        assert_eq!(&b[..6], b"070701");
        let field =
            |i: usize| u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16).unwrap();
        assert_eq!(field(0), 1); // ino
        assert_eq!(field(1), 0o100755); // mode
        assert_eq!(field(6), 10); // size
        assert_eq!(field(11), 5); // "init\0"
        assert_eq!(&b[110..115], b"init\0");
        // header 110 + name 5 = 115, padded to 116; data at 116.
        assert_eq!(&b[116..126], b"#!/bin/sh\n");
        assert_eq!(b.len() % 4, 0);
        assert!(b.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn system_cpio_lists_it() {
        // Cross-check with GNU cpio when it is installed.
        if std::process::Command::new("cpio").arg("--version").output().is_err() {
            return;
        }
        let mut c = Cpio::new();
        c.dir("/bin");
        c.file("/bin/busybox", 0o755, &[0u8; 13]);
        c.symlink("/bin/sh", "busybox");
        c.char_dev("/dev/console", 0o600, 5, 1);
        let bytes = c.finish();
        let mut child = std::process::Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        assert!(out.contains("bin/sh -> busybox"), "{out}");
        assert!(out.lines().any(|l| l.starts_with("crw-------") && l.ends_with("dev/console")), "{out}");
        assert!(
            out.lines().any(|l| l.starts_with("-rwxr-xr-x") && l.contains(" 13 ") && l.ends_with("bin/busybox")),
            "{out}"
        );
    }
}
