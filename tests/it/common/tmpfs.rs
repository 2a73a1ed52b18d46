//! A small tmpfs, for a disk that fills up for real: mounted in a directory of its own
//! (which needs root, as the tests run in CI), unmounted and removed on drop, panics
//! included.

use std::path::PathBuf;
use std::process::Command;

use super::unique_name;

pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// A tmpfs of `bytes` (rounded up to whole pages by the kernel).
    pub fn mount(bytes: u64) -> Tmpfs {
        let dir = std::env::temp_dir().join(unique_name("prov_tmpfs"));
        std::fs::create_dir_all(&dir).expect("create the tmpfs mount point");
        let tmpfs = Tmpfs { dir };
        tmpfs.mount_command(&format!("size={bytes}"));
        tmpfs
    }

    /// A path on it.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Grows or shrinks it to `bytes`: growing it frees a full disk.
    pub fn resize(&self, bytes: u64) {
        self.mount_command(&format!("remount,size={bytes}"));
    }

    fn mount_command(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&self.dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount -t tmpfs -o {options} tmpfs {} failed (the disk-full tests need root): {}",
            self.dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}
