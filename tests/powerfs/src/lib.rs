//! A FUSE file system for power-loss tests: it passes every operation through to a
//! backing directory, and remembers what a real disk would still hold after the power
//! went out — per file, the content as of its last `fsync`/`fdatasync`, and per
//! directory, its entries as of its last directory `fsync`. [`Mounted::cut`]
//! freezes that durable image (every later operation fails with `EIO`, as on a machine
//! whose disk is gone), unmounts, and rewrites the backing directory to hold exactly
//! the durable image: unsynced writes, creates, renames and unlinks are undone.
//!
//! The model is POSIX's, stricter than ext4's journal (which often makes a create durable
//! with the file's own fsync): a new file's name survives only once its directory was
//! synced, and its bytes only once the file was. A file whose name is durable but whose
//! content never was comes back empty. Why strict: a program that is durable only on
//! the most forgiving file system is not durable. One exception, because no real file
//! system does otherwise: a rename between two directories is one change, durable in
//! both once either directory is synced — never a file or directory under two names.
//!
//! The durable image is kept in this process's memory (the test's), not in a second
//! directory: a power cut here is a call, not a crash of this process, and memory makes
//! an fsync cost only the bytes written since the last one.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    AccessFlags, BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem,
    FopenFlags, Generation, INodeNo, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};

/// Attributes and entries are never cached by the kernel: the backing directory is the
/// only truth, and a cache could hide an operation from the model.
const TTL: Duration = Duration::ZERO;
const ROOT: u64 = 1;

/// What the power cut discarded, to show that the file system did lose something.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CutReport {
    /// Files whose content differed from their durable content at the cut.
    pub files_reverted: usize,
    /// Directory entries created, renamed or removed since their directory's last sync.
    pub entries_reverted: usize,
    /// File operations (`write`, truncation) not yet synced at the cut.
    pub unsynced_writes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

struct Node {
    kind: Kind,
    /// The current location (parent inode, name); `None` once unlinked.
    at: Option<(u64, OsString)>,
    /// A file's bytes as of its last sync (`None`: never synced since it was created).
    durable: Option<Vec<u8>>,
    /// The byte range written since the last sync (end exclusive, capped by the size).
    dirty: Option<(u64, u64)>,
    /// Writes since the last sync, for the report.
    unsynced_writes: usize,
}

struct State {
    backing: PathBuf,
    nodes: HashMap<u64, Node>,
    /// Each directory's current entries.
    entries: HashMap<u64, BTreeMap<OsString, u64>>,
    /// Each directory's entries as of its last sync.
    durable_entries: HashMap<u64, BTreeMap<OsString, u64>>,
    handles: HashMap<u64, (u64, Arc<File>)>,
    next_ino: u64,
    next_fh: u64,
    /// Set by the power cut: the disk is gone.
    dead: bool,
    /// Renames between two directories not yet durable: (inode, from, to). A journaling
    /// file system commits such a rename as one transaction, so syncing *either*
    /// directory makes it durable in both — never a directory under two names or none.
    moves: Vec<Move>,
}

/// A rename between two directories: the inode, and its (directory, name) before and after.
type Move = (u64, (u64, OsString), (u64, OsString));

impl State {
    /// Scans `backing`; everything in it counts as durable (it is what the disk held when
    /// the machine came up).
    fn scan(backing: &Path) -> io::Result<State> {
        let mut state = State {
            backing: backing.to_path_buf(),
            nodes: HashMap::new(),
            entries: HashMap::new(),
            durable_entries: HashMap::new(),
            handles: HashMap::new(),
            next_ino: ROOT + 1,
            next_fh: 1,
            dead: false,
            moves: Vec::new(),
        };
        state.nodes.insert(ROOT, new_node(Kind::Dir, None));
        state.scan_dir(ROOT, backing)?;
        state.durable_entries = state.entries.clone();
        Ok(state)
    }

    fn scan_dir(&mut self, ino: u64, dir: &Path) -> io::Result<()> {
        let mut map = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let file_type = entry.file_type()?;
            let child = self.alloc_ino();
            let name = entry.file_name();
            if file_type.is_dir() {
                self.nodes
                    .insert(child, new_node(Kind::Dir, Some((ino, name.clone()))));
                self.scan_dir(child, &entry.path())?;
            } else if file_type.is_file() {
                let mut node = new_node(Kind::File, Some((ino, name.clone())));
                node.durable = Some(std::fs::read(entry.path())?);
                self.nodes.insert(child, node);
            } else {
                return Err(io::Error::other(format!(
                    "{}: only files and directories are supported",
                    entry.path().display()
                )));
            }
            map.insert(name, child);
        }
        self.entries.insert(ino, map);
        Ok(())
    }

    fn alloc_ino(&mut self) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    fn path(&self, ino: u64) -> Result<PathBuf, Errno> {
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let node = self.nodes.get(&cur).ok_or(Errno::ENOENT)?;
            let (parent, name) = node.at.as_ref().ok_or(Errno::ENOENT)?;
            parts.push(name.clone());
            cur = *parent;
        }
        let mut path = self.backing.clone();
        path.extend(parts.iter().rev());
        Ok(path)
    }

    fn child_path(&self, parent: u64, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.path(parent)?.join(name))
    }

    fn attr(&self, ino: u64, fh: Option<FileHandle>) -> Result<FileAttr, Errno> {
        let meta = match fh.and_then(|fh| self.handles.get(&fh.0)) {
            Some((_, file)) => file.metadata()?,
            None => std::fs::symlink_metadata(self.path(ino)?)?,
        };
        let time = |secs: i64, nanos: i64| {
            UNIX_EPOCH
                + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
                + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size: meta.size(),
            blocks: meta.blocks(),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: UNIX_EPOCH,
            kind: if meta.is_dir() {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: u16::try_from(meta.mode() & 0o7777).unwrap_or(0o644),
            nlink: u32::try_from(meta.nlink()).unwrap_or(1),
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn mark_dirty(&mut self, ino: u64, lo: u64, hi: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.dirty = Some(match node.dirty {
                Some((a, b)) => (a.min(lo), b.max(hi)),
                None => (lo, hi),
            });
            node.unsynced_writes += 1;
        }
    }

    /// fsync/fdatasync of a file: its current bytes become its durable bytes.
    fn sync_file(&mut self, ino: u64, file: &File) -> Result<(), Errno> {
        let len = file.metadata()?.len();
        let node = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        let len_usize = usize::try_from(len).map_err(|_| Errno::EFBIG)?;
        let (lo, hi) = match (&node.durable, node.dirty) {
            (None, _) => (0, len),
            (Some(_), Some((lo, hi))) => (lo.min(len), hi.min(len)),
            (Some(_), None) => (len, len),
        };
        let durable = node.durable.get_or_insert_with(Vec::new);
        durable.resize(len_usize, 0);
        if hi > lo {
            let (lo_u, hi_u) = (
                usize::try_from(lo).map_err(|_| Errno::EFBIG)?,
                usize::try_from(hi).map_err(|_| Errno::EFBIG)?,
            );
            file.read_exact_at(&mut durable[lo_u..hi_u], lo)?;
        }
        node.dirty = None;
        node.unsynced_writes = 0;
        Ok(())
    }

    /// Writes the durable image into `dest` (which must be empty) and says what differed.
    fn materialize(&self, dest: &Path) -> io::Result<CutReport> {
        let mut report = CutReport::default();
        for (ino, node) in &self.nodes {
            report.unsynced_writes += node.unsynced_writes;
            if node.kind == Kind::Dir {
                let current = self.entries.get(ino);
                let durable = self.durable_entries.get(ino);
                let empty = BTreeMap::new();
                let (current, durable) = (current.unwrap_or(&empty), durable.unwrap_or(&empty));
                report.entries_reverted += current
                    .iter()
                    .filter(|(name, child)| durable.get(*name) != Some(*child))
                    .count()
                    + durable
                        .iter()
                        .filter(|(name, child)| current.get(*name) != Some(*child))
                        .count();
            }
        }
        let mut visited = std::collections::HashSet::new();
        self.materialize_dir(ROOT, dest, &mut visited, &mut report)?;
        Ok(report)
    }

    fn materialize_dir(
        &self,
        ino: u64,
        dir: &Path,
        visited: &mut std::collections::HashSet<u64>,
        report: &mut CutReport,
    ) -> io::Result<()> {
        if !visited.insert(ino) {
            return Ok(());
        }
        let Some(entries) = self.durable_entries.get(&ino) else {
            return Ok(());
        };
        for (name, child) in entries {
            let Some(node) = self.nodes.get(child) else {
                continue;
            };
            let path = dir.join(name);
            match node.kind {
                Kind::Dir => {
                    std::fs::create_dir(&path)?;
                    self.materialize_dir(*child, &path, visited, report)?;
                }
                Kind::File => {
                    let bytes = node.durable.as_deref().unwrap_or(&[]);
                    if node.dirty.is_some() || node.durable.is_none() {
                        report.files_reverted += 1;
                    }
                    std::fs::write(&path, bytes)?;
                }
            }
        }
        Ok(())
    }
}

fn new_node(kind: Kind, at: Option<(u64, OsString)>) -> Node {
    Node {
        kind,
        at,
        durable: None,
        dirty: None,
        unsynced_writes: 0,
    }
}

/// The FUSE side: every operation locks the state, so a power cut (which takes the same
/// lock) falls between two operations, never inside one — an fsync answered OK was
/// recorded before the cut.
struct PowerFs {
    state: Arc<Mutex<State>>,
}

impl PowerFs {
    fn live(&self) -> Result<MutexGuard<'_, State>, Errno> {
        let state = self.state.lock().map_err(|_| Errno::EIO)?;
        if state.dead {
            return Err(Errno::EIO);
        }
        Ok(state)
    }

    fn entry(&self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let state = self.live()?;
        let ino = *state
            .entries
            .get(&parent)
            .and_then(|e| e.get(name))
            .ok_or(Errno::ENOENT)?;
        state.attr(ino, None)
    }

    fn open_file(&self, ino: u64, flags: i32) -> Result<u64, Errno> {
        let mut state = self.live()?;
        let path = state.path(ino)?;
        let file = open_options(flags).open(&path)?;
        if flags & libc_o_trunc() != 0 {
            state.mark_dirty(ino, 0, u64::MAX);
        }
        let fh = state.next_fh;
        state.next_fh += 1;
        state.handles.insert(fh, (ino, Arc::new(file)));
        Ok(fh)
    }

    fn handle(&self, fh: FileHandle) -> Result<(MutexGuard<'_, State>, u64, Arc<File>), Errno> {
        let state = self.live()?;
        let (ino, file) = state.handles.get(&fh.0).cloned().ok_or(Errno::EBADF)?;
        Ok((state, ino, file))
    }
}

const O_ACCMODE: i32 = 0o3;
const O_WRONLY: i32 = 0o1;
const O_RDWR: i32 = 0o2;
const fn libc_o_trunc() -> i32 {
    0o1000
}
const O_APPEND: i32 = 0o2000;

fn open_options(flags: i32) -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true);
    match flags & O_ACCMODE {
        O_WRONLY | O_RDWR => {
            options.write(true);
        }
        _ => {}
    }
    if flags & O_APPEND != 0 {
        options.append(true);
    }
    if flags & libc_o_trunc() != 0 {
        options.truncate(true);
    }
    options
}

impl Filesystem for PowerFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.entry(parent.0, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.live().and_then(|s| s.attr(ino.0, fh)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let result = (|| {
            let mut state = self.live()?;
            let path = state.path(ino.0);
            if let Some(size) = size {
                let old = match fh.and_then(|fh| state.handles.get(&fh.0)) {
                    Some((_, file)) => {
                        let old = file.metadata()?.len();
                        file.set_len(size)?;
                        old
                    }
                    None => {
                        let file = OpenOptions::new().write(true).open(path.clone()?)?;
                        let old = file.metadata()?.len();
                        file.set_len(size)?;
                        old
                    }
                };
                state.mark_dirty(ino.0, old.min(size), u64::MAX);
            }
            if let Some(mode) = mode {
                std::fs::set_permissions(path?, std::fs::Permissions::from_mode(mode & 0o7777))?;
            }
            state.attr(ino.0, fh)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let result = (|| {
            let mut state = self.live()?;
            let path = state.child_path(parent.0, name)?;
            std::fs::create_dir(&path)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !umask))?;
            let ino = state.alloc_ino();
            state.nodes.insert(
                ino,
                new_node(Kind::Dir, Some((parent.0, name.to_os_string()))),
            );
            state.entries.insert(ino, BTreeMap::new());
            state
                .entries
                .entry(parent.0)
                .or_default()
                .insert(name.to_os_string(), ino);
            state.attr(ino, None)
        })();
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.remove(parent.0, name, Kind::File));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.remove(parent.0, name, Kind::Dir));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = (|| {
            if flags.bits() != 0 {
                return Err(Errno::EINVAL);
            }
            let mut state = self.live()?;
            let from = state.child_path(parent.0, name)?;
            let to = state.child_path(newparent.0, newname)?;
            std::fs::rename(&from, &to)?;
            let ino = state
                .entries
                .get_mut(&parent.0)
                .and_then(|e| e.remove(name))
                .ok_or(Errno::ENOENT)?;
            let replaced = state
                .entries
                .entry(newparent.0)
                .or_default()
                .insert(newname.to_os_string(), ino);
            if let Some(old) = replaced.and_then(|r| state.nodes.get_mut(&r)) {
                old.at = None;
            }
            if let Some(node) = state.nodes.get_mut(&ino) {
                node.at = Some((newparent.0, newname.to_os_string()));
            }
            if parent.0 != newparent.0 {
                state.moves.push((
                    ino,
                    (parent.0, name.to_os_string()),
                    (newparent.0, newname.to_os_string()),
                ));
            }
            Ok(())
        })();
        reply_empty(reply, result);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.open_file(ino.0, flags.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let result = (|| {
            let (_state, _ino, file) = self.handle(fh)?;
            let mut buf = vec![0; size as usize];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read_at(&mut buf[filled..], offset + filled as u64)? {
                    0 => break,
                    n => filled += n,
                }
            }
            buf.truncate(filled);
            Ok(buf)
        })();
        match result {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let result = (|| {
            let (mut state, ino, file) = self.handle(fh)?;
            file.write_all_at(data, offset)?;
            state.mark_dirty(ino, offset, offset + data.len() as u64);
            u32::try_from(data.len()).map_err(|_| Errno::EFBIG)
        })();
        match result {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() is not a sync: nothing becomes durable.
        reply_empty(reply, self.live().map(|_| ()));
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Ok(mut state) = self.state.lock() {
            state.handles.remove(&fh.0);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = (|| {
            let (mut state, ino, file) = self.handle(fh)?;
            state.sync_file(ino, &file)
        })();
        reply_empty(reply, result);
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.live() {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let state = match self.live() {
            Ok(state) => state,
            Err(e) => return reply.error(e),
        };
        let Some(entries) = state.entries.get(&ino.0) else {
            return reply.error(Errno::ENOTDIR);
        };
        let parent = state
            .nodes
            .get(&ino.0)
            .and_then(|n| n.at.as_ref())
            .map_or(ROOT, |(p, _)| *p);
        let mut all: Vec<(u64, FileType, OsString)> = vec![
            (ino.0, FileType::Directory, ".".into()),
            (parent, FileType::Directory, "..".into()),
        ];
        for (name, child) in entries {
            let kind = match state.nodes.get(child).map(|n| n.kind) {
                Some(Kind::Dir) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            all.push((*child, kind, name.clone()));
        }
        for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = (|| {
            let mut state = self.live()?;
            let entries = state.entries.get(&ino.0).cloned().ok_or(Errno::ENOTDIR)?;
            state.durable_entries.insert(ino.0, entries);
            // Renames between this directory and another become durable on both sides.
            let (done, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut state.moves)
                .into_iter()
                .partition(|(_, from, to)| from.0 == ino.0 || to.0 == ino.0);
            state.moves = pending;
            for (moved, from, to) in done {
                let durable_from = state.durable_entries.entry(from.0).or_default();
                if durable_from.get(&from.1) == Some(&moved) {
                    durable_from.remove(&from.1);
                }
                state
                    .durable_entries
                    .entry(to.0)
                    .or_default()
                    .insert(to.1, moved);
            }
            Ok(())
        })();
        reply_empty(reply, result);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply_empty(reply, self.live().map(|_| ()));
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let result = (|| {
            let mut state = self.live()?;
            let path = state.child_path(parent.0, name)?;
            let existing = state
                .entries
                .get(&parent.0)
                .and_then(|e| e.get(name))
                .copied();
            let mut options = open_options(flags);
            options.write(true).create(true).mode(mode & !umask);
            let file = options.open(&path)?;
            let ino = match existing {
                Some(ino) => ino,
                None => {
                    let ino = state.alloc_ino();
                    state.nodes.insert(
                        ino,
                        new_node(Kind::File, Some((parent.0, name.to_os_string()))),
                    );
                    state
                        .entries
                        .entry(parent.0)
                        .or_default()
                        .insert(name.to_os_string(), ino);
                    ino
                }
            };
            if flags & libc_o_trunc() != 0 {
                state.mark_dirty(ino, 0, u64::MAX);
            }
            let fh = state.next_fh;
            state.next_fh += 1;
            state.handles.insert(fh, (ino, Arc::new(file)));
            Ok((state.attr(ino, None)?, fh))
        })();
        match result {
            Ok((attr, fh)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }
}

impl PowerFs {
    fn remove(&self, parent: u64, name: &OsStr, kind: Kind) -> Result<(), Errno> {
        let mut state = self.live()?;
        let path = state.child_path(parent, name)?;
        match kind {
            Kind::File => std::fs::remove_file(&path)?,
            Kind::Dir => std::fs::remove_dir(&path)?,
        }
        let ino = state
            .entries
            .get_mut(&parent)
            .and_then(|e| e.remove(name))
            .ok_or(Errno::ENOENT)?;
        if let Some(node) = state.nodes.get_mut(&ino) {
            node.at = None;
        }
        Ok(())
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// A mounted power-loss file system.
pub struct Mounted {
    state: Arc<Mutex<State>>,
    session: Option<BackgroundSession>,
    backing: PathBuf,
    mountpoint: PathBuf,
}

/// Mounts `backing` at `mountpoint`. Everything in `backing` counts as durable. Needs
/// root (mount(2) on `/dev/fuse`); the error says what failed.
pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<Mounted> {
    let state = Arc::new(Mutex::new(State::scan(backing)?));
    let fs = PowerFs {
        state: Arc::clone(&state),
    };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("adledger-powerfs".to_string()),
        MountOption::DefaultPermissions,
    ];
    config.n_threads = Some(2);
    let session = fuser::spawn_mount(fs, mountpoint, &config).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "mounting the FUSE file system at {} failed (needs root and /dev/fuse): {e}",
                mountpoint.display()
            ),
        )
    })?;
    Ok(Mounted {
        state,
        session: Some(session),
        backing: backing.to_path_buf(),
        mountpoint: mountpoint.to_path_buf(),
    })
}

impl Mounted {
    /// The power goes out: from now on every operation fails with `EIO` and nothing more
    /// becomes durable. Kill the processes using the mount next, then call
    /// [`Mounted::restore`].
    pub fn cut(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.dead = true;
        }
    }

    /// After [`Mounted::cut`] (and once no process uses the mount): unmounts, and rewrites
    /// the backing directory to hold exactly what was durable at the cut. Mount it again
    /// to "boot" on what survived.
    pub fn restore(mut self) -> io::Result<CutReport> {
        self.cut();
        if let Some(session) = self.session.take() {
            // The session thread ends with "connection aborted" (or "no such device") when
            // the kernel tears the connection down at unmount: that is the expected end.
            // What matters is that the mount is gone, checked below.
            if let Err(e) = session.umount_and_join()
                && !matches!(e.raw_os_error(), Some(103 | 19))
            {
                return Err(e);
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mountpoint = self.mountpoint.to_string_lossy();
        if mounts
            .lines()
            .any(|line| line.split_whitespace().nth(1) == Some(&*mountpoint))
        {
            return Err(io::Error::other(format!(
                "{mountpoint} is still mounted after the power cut"
            )));
        }
        let state = self
            .state
            .lock()
            .map_err(|_| io::Error::other("the file system's state lock is poisoned"))?;
        for entry in std::fs::read_dir(&self.backing)? {
            let path = entry?.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        state.materialize(&self.backing)
    }

    /// Where the file system is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            // Best effort: a test that panicked must not leave a mount behind.
            let _ = session.umount_and_join();
        }
    }
}
