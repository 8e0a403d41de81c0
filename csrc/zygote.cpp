// The zygote's serve loop, in C++ so that the zygote runs no Python while a generation child is alive
// (Python's reference counting would copy-on-write shared pages in both processes). The loop reads
// frames from the supervisor, forks one child per RUN frame and, in that child, enters the sandbox and
// returns to Python with the program; in the zygote it reports STARTED, waits for the child (pidfd),
// honours KILL frames of that generation, kills whatever the generation left running, reads the
// generation's cgroup counters, reports EXIT and swaps in fresh writable mounts (Writable; removal without
// depth limit where there is no mount namespace). Every frame carries the generation's sequence number.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <tuple>
#include <vector>

#include <pybind11/stl.h>

#include "child.h"
#include "executor.h"
#include "frame.h"

namespace py = pybind11;

namespace mcf {
namespace {

constexpr uint64_t kMaxRunPayload = 1ull << 31;

int64_t now_ns() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// Lists dfd's entries: non-directories are unlinked, subdirectory names returned.
std::vector<std::string> unlink_files(int dfd) {
    std::vector<std::string> subdirs;
    int dup = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) return subdirs;
    DIR* d = fdopendir(dup);
    if (!d) {
        ::close(dup);
        return subdirs;
    }
    std::vector<std::string> names;
    while (struct dirent* e = readdir(d)) {
        if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
        names.emplace_back(e->d_name);
    }
    closedir(d);
    for (auto& n : names) {
        if (unlinkat(dfd, n.c_str(), 0) == 0) continue;
        if (errno == EISDIR || errno == EPERM) subdirs.push_back(n);
    }
    return subdirs;
}

// Removes everything inside the directory open as rootfd (taken over), at any depth, holding two
// descriptors at most: the way back up is "..", and each level's remaining subdirectory names are kept
// in memory. Returns false if something could not be removed.
bool remove_contents(int rootfd) {
    struct Level {
        std::string name;
        std::vector<std::string> subdirs;
    };
    std::vector<Level> levels;
    int cur = rootfd;
    levels.push_back({std::string(), unlink_files(cur)});
    bool ok = true;
    for (;;) {
        Level& L = levels.back();
        if (!L.subdirs.empty()) {
            std::string name = std::move(L.subdirs.back());
            L.subdirs.pop_back();
            int sub = openat(cur, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                if (unlinkat(cur, name.c_str(), AT_REMOVEDIR) != 0 && unlinkat(cur, name.c_str(), 0) != 0) ok = false;
                continue;
            }
            fchmod(sub, 0700);
            ::close(cur);
            cur = sub;
            levels.push_back({name, unlink_files(cur)});
            continue;
        }
        if (levels.size() == 1) {
            ::close(cur);
            return ok;
        }
        int up = openat(cur, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ::close(cur);
        if (up < 0) return false;
        if (unlinkat(up, L.name.c_str(), AT_REMOVEDIR) != 0) ok = false;
        levels.pop_back();
        cur = up;
    }
}

struct Zy {
    int sock = 3;
    std::string workdir;
    int uid = -1, gid = -1;
    bool pid1 = false;
    bool seccomp = false;
    long tmpfs_mb = 0;                  // > 0: every writable mount is a fresh tmpfs per generation
    bool new_ipc = false;               // each generation child gets a fresh IPC namespace
    std::string child_oom_adj;          // written to the child's oom_score_adj ("": nothing)
    std::vector<int> cg_reset;          // counters reset before each generation
    int cg_oom = -1;                    // memory.oom_control (v1) / memory.events (v2): "oom_kill N"
    int cg_peak = -1;                   // memory.max_usage_in_bytes (v1) / memory.peak (v2), reported above
                                        // the reset value (the zygote's own charge)
    int last_pid_fd = -1;               // /proc/sys/kernel/ns_last_pid of the zygote's PID namespace
};

void kill_tree(const Zy& z, pid_t child) {
    if (z.pid1) {
        ::kill(-1, SIGKILL);  // as init of its PID namespace: everyone else in it
        return;
    }
    ::killpg(child, SIGKILL);
    ::kill(child, SIGKILL);
}

// SIGKILL every direct child listed in /proc/self/task/<tid>/children. False if that file is unavailable.
bool kill_direct_children() {
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/self/task/%ld/children", static_cast<long>(syscall(SYS_gettid)));
    FILE* f = std::fopen(path, "r");
    if (!f) return false;
    long pid;
    while (std::fscanf(f, "%ld", &pid) == 1) {
        if (pid > 0) ::kill(static_cast<pid_t>(pid), SIGKILL);
    }
    std::fclose(f);
    return true;
}

// After the generation child is reaped: anything still alive below the zygote is a leftover of it.
void kill_strays(const Zy& z, pid_t child) {
    for (int round = 0; round < 100; ++round) {
        int st;
        pid_t r = ::waitpid(-1, &st, WNOHANG);
        if (r < 0 && errno == ECHILD) return;
        if (r > 0) continue;
        if (z.pid1) {
            ::kill(-1, SIGKILL);
        } else if (kill_direct_children()) {
            // the zygote is a child subreaper: every orphan of the generation is its direct child
        } else if (z.uid >= 0) {
            pid_t rp = fork();
            if (rp == 0) {
                setgroups(0, nullptr);
                if (setresgid(z.gid, z.gid, z.gid) == 0 && setresuid(z.uid, z.uid, z.uid) == 0) ::kill(-1, SIGKILL);
                _exit(0);
            }
        } else {
            ::killpg(child, SIGKILL);
        }
        for (int i = 0; i < 2000; ++i) {
            r = ::waitpid(-1, &st, WNOHANG);
            if (r < 0 && errno == ECHILD) return;
            if (r == 0) {
                struct timespec ts = {0, 500000};
                nanosleep(&ts, nullptr);
                if (i % 20 == 19) break;  // re-kill: something may have forked meanwhile
            }
        }
    }
}

// Inodes in use on the filesystem at `path` (its root and everything below); -1 if statfs fails.
int64_t inodes_in_use(const std::string& path, struct statfs& st) {
    if (::statfs(path.c_str(), &st) != 0) return -1;
    return static_cast<int64_t>(st.f_files - st.f_ffree);
}

// A writable mount point as the zygote's Python side describes it: (path, root mode, root owned by the
// generation's uid, subdirectories (name, mode, owned by the generation's uid)).
using MountSpec = std::tuple<std::string, std::string, bool, std::vector<std::tuple<std::string, int, bool>>>;

bool move_mount_to(const std::string& from, const std::string& to) {
    return ::mount(from.c_str(), to.c_str(), nullptr, MS_MOVE, nullptr) == 0;
}

// What a generation may write, with a mount namespace: one or more tmpfs mount points (with the minimal
// root, one: the generation directory holding the work dir and the /dev/shm directory, /dev/shm being a
// symlink to it), each a fresh tmpfs for every generation (new, empty, no xattrs, new times, inode
// numbers from the start). The fresh mounts are made ahead, while the previous generation runs, under a
// root-only staging directory. After a generation is reaped, whatever it left in its mounts is deleted
// (so none of its memory is charged when the next generation is forked; statfs tells when there is
// nothing to delete), the used mounts are moved (MS_MOVE) into a root-only graveyard mount and the staged
// ones moved into place. The graveyard, with every mount in it, is detached by one umount every
// kGraveBatch generations, after a fork: an umount waits for an expedited RCU grace period (IPIs to every
// CPU), the one slow step of all this, so it is paid once per batch. Every generation goes through the
// same steps whatever its program did, so the mount table (which /proc/self/mountinfo shows) tells a
// generation nothing about the ones before it.
struct Writable {
    static constexpr int kGraveBatch = 32;
    struct Sub {
        std::string name;
        int mode = 0700;
        bool owned = false;  // chowned to the generation's uid
    };
    struct Mount {
        std::string path, stage, opts;
        std::vector<Sub> subs;
        bool staged = false;
        int64_t fresh_inodes = 0;  // inodes in use on a fresh, staged mount (its root and subdirectories)
        int64_t used_inodes = 0;   // ... on the mount now in place, when it was fresh
    };
    std::vector<Mount> mounts;
    int uid = -1, gid = -1;
    std::string grave_root;
    bool grave_ready = false;  // a graveyard tmpfs is mounted at grave_root
    int buried = 0;            // generations whose mounts wait in it
    uint64_t swaps = 0;
    std::string deferred_err;  // a failure while a generation ran, reported by the next swap

    // mounts: (path, root mode, root owned by the generation's uid, subdirectories (name, mode, owned)).
    // Makes the first mounts and the root-only staging and graveyard directories. "" or the failed step.
    std::string init(const std::vector<MountSpec>& specs, long mb, int uid_, int gid_) {
        uid = uid_;
        gid = gid_;
        if (specs.empty()) return "no writable mount";
        const std::string& first = std::get<0>(specs[0]);
        std::string parent = first.substr(0, first.find_last_of('/'));
        if (parent.empty()) parent = "/";
        const std::string stage_root = parent + "/.mcf-stage";
        grave_root = parent + "/.mcf-grave";
        for (const std::string& d : {stage_root, grave_root}) {
            if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) return "mkdir " + d;
            if (::chmod(d.c_str(), 0700) != 0) return "chmod " + d;
        }
        for (size_t i = 0; i < specs.size(); ++i) {
            Mount m;
            m.path = std::get<0>(specs[i]);
            std::string opts = "size=" + std::to_string(mb) + "m,mode=" + std::get<1>(specs[i]);
            if (std::get<2>(specs[i]) && uid >= 0) opts += ",uid=" + std::to_string(uid) + ",gid=" + std::to_string(gid);
            m.opts = opts;
            for (auto& sd : std::get<3>(specs[i])) m.subs.push_back({std::get<0>(sd), std::get<1>(sd), std::get<2>(sd)});
            m.stage = stage_root + "/" + std::to_string(i);
            if (::mkdir(m.stage.c_str(), 0700) != 0 && errno != EEXIST) return "mkdir " + m.stage;
            ::umount2(m.path.c_str(), MNT_DETACH);  // EINVAL: not a mount point yet
            std::string err = fresh(m, m.path, m.used_inodes);
            if (!err.empty()) return err;
            mounts.push_back(std::move(m));
        }
        return prepare();
    }

    // A fresh tmpfs at `at` with m's subdirectories; `inodes` gets its inodes in use. "" or the failed step.
    std::string fresh(const Mount& m, const std::string& at, int64_t& inodes) {
        if (::mount("tmpfs", at.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, m.opts.c_str()) != 0) return "mount tmpfs " + at;
        mode_t old = ::umask(0);  // the modes exactly as given (the sticky bit included)
        std::string err;
        for (auto& sd : m.subs) {
            std::string p = at + "/" + sd.name;
            if (::mkdir(p.c_str(), static_cast<mode_t>(sd.mode)) != 0) err = "mkdir " + p;
            else if (sd.owned && uid >= 0 && ::chown(p.c_str(), uid, gid) != 0) err = "chown " + p;
            if (!err.empty()) break;
        }
        ::umask(old);
        if (!err.empty()) return err;
        struct statfs st;
        inodes = inodes_in_use(at, st);
        return inodes < 0 ? "statfs " + at : "";
    }

    // The graveyard and a fresh mount for every mount point (the zygote does this while a generation
    // runs). "" or the failed step.
    std::string prepare() {
        if (!grave_ready) {
            if (::mount("tmpfs", grave_root.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0700") != 0)
                return "mount tmpfs " + grave_root;
            grave_ready = true;
        }
        for (auto& m : mounts) {
            if (m.staged) continue;
            std::string err = fresh(m, m.stage, m.fresh_inodes);
            if (!err.empty()) return err;
            m.staged = true;
        }
        return "";
    }

    // Deletes whatever a generation left in mount m (at any depth), unless statfs shows nothing beyond a
    // fresh mount's. "" or the failed step.
    static std::string empty(const Mount& m) {
        struct statfs st;
        int64_t inodes = inodes_in_use(m.path, st);
        if (inodes < 0) return "statfs " + m.path;
        if (st.f_blocks == st.f_bfree && inodes == m.used_inodes) return "";
        int fd = ::open(m.path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || !remove_contents(fd)) return "emptying " + m.path;
        return "";
    }

    // After a generation is reaped (nothing of it alive): its files deleted, its mounts moved into the
    // graveyard, the staged ones moved into place. "" or the failed step.
    std::string swap() {
        if (!deferred_err.empty()) return deferred_err;
        std::string err = prepare();
        if (!err.empty()) return err;
        ++swaps;
        for (size_t i = 0; i < mounts.size(); ++i) {
            Mount& m = mounts[i];
            err = empty(m);
            if (!err.empty()) return err;
            std::string grave = grave_root + "/" + std::to_string(swaps) + "." + std::to_string(i);
            if (::mkdir(grave.c_str(), 0700) != 0) return "mkdir " + grave;
            if (!move_mount_to(m.path, grave)) return "move the used tmpfs off " + m.path;
            if (!move_mount_to(m.stage, m.path)) return "move a fresh tmpfs onto " + m.path;
            m.staged = false;
            m.used_inodes = m.fresh_inodes;
        }
        ++buried;
        return "";
    }

    // In the zygote right after a fork: detach the graveyard once a batch is full, then stage the next
    // generation's mounts (a failure is reported by the next swap()).
    void while_running() {
        if (buried >= kGraveBatch) {
            buried = 0;
            grave_ready = false;
            if (::umount2(grave_root.c_str(), MNT_DETACH) != 0) {
                deferred_err = "umount " + grave_root;
                return;
            }
        }
        std::string err = prepare();
        if (!err.empty()) deferred_err = err;
    }
};

// Without a mount namespace: remove the work dir at any depth and make a new one. "" or the failed step.
std::string recreate_workdir(const std::string& workdir, int uid, int gid) {
    int fd = open(workdir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        fchmod(fd, 0700);
        if (!remove_contents(fd)) return "emptying " + workdir;
    }
    if (rmdir(workdir.c_str()) != 0 && errno != ENOENT && unlink(workdir.c_str()) != 0) return "rmdir " + workdir;
    if (mkdir(workdir.c_str(), 0700) != 0) return "mkdir " + workdir;
    if (uid >= 0 && chown(workdir.c_str(), uid, gid) != 0) return "chown " + workdir;
    return "";
}

// Reads a cgroup file from offset 0.
std::string read_cg(int fd) {
    char buf[4096];
    ssize_t k = pread(fd, buf, sizeof(buf) - 1, 0);
    if (k <= 0) return std::string();
    return std::string(buf, static_cast<size_t>(k));
}

int64_t read_oom_kills(const Zy& z) {
    if (z.cg_oom < 0) return -1;
    std::string s = read_cg(z.cg_oom);
    size_t p = s.find("oom_kill ");
    if (p == std::string::npos) return -1;
    return std::strtoll(s.c_str() + p + 9, nullptr, 10);
}

int64_t read_peak(const Zy& z) {
    if (z.cg_peak < 0) return -1;
    std::string s = read_cg(z.cg_peak);
    return s.empty() ? -1 : std::strtoll(s.c_str(), nullptr, 10);
}

// RUN payload (frame.h) into a ChildConfig.
bool parse_run(const std::string& payload, ChildConfig& c, std::string& fn_name, std::string& source) {
    FieldReader r(payload);
    fn_name = r.bytes();
    c.as_bytes = r.i64();
    c.cpu_s = r.i64();
    c.fsize = r.i64();
    c.nproc = r.i64();
    c.nofile = r.i64();
    c.stack = r.i64();
    source = r.bytes();
    return r.done();
}

struct Pending {
    Frame f;
    std::vector<UniqueFd> fds;
};

int64_t bench_forks(long n) {
    if (n <= 0) n = 200;
    int64_t a = now_ns();
    for (long i = 0; i < n; ++i) {
        pid_t p = fork();
        if (p == 0) _exit(0);
        int st;
        while (p > 0 && waitpid(p, &st, 0) < 0 && errno == EINTR) {
        }
    }
    return (now_ns() - a) / n;
}

void send_text(int sock, uint32_t type, uint32_t seq, const std::string& text) {
    FieldWriter w;
    w.bytes(text);
    send_frame_blocking(sock, type, seq, w.str());
}

}  // namespace

// Serve the supervisor until EOF (returns None: the zygote should exit). In a forked generation child
// it returns (fn_name | None, source bytes) with the sandbox entered and fd 3 = control socket.
py::object zygote_loop(int sock, const std::string& workdir, int uid, int gid, bool pid1, bool seccomp, long tmpfs_mb,
                       const std::vector<MountSpec>& mounts, bool new_ipc, const std::string& child_oom_adj,
                       const std::vector<int>& cg_reset, int cg_oom, int cg_peak, int last_pid_fd) {
    Zy z;
    z.sock = sock;
    z.workdir = workdir;
    z.uid = uid;
    z.gid = gid;
    z.pid1 = pid1;
    z.seccomp = seccomp;
    z.tmpfs_mb = tmpfs_mb;
    z.new_ipc = new_ipc;
    z.child_oom_adj = child_oom_adj;
    z.cg_reset = cg_reset;
    z.cg_oom = cg_oom;
    z.cg_peak = cg_peak;
    z.last_pid_fd = last_pid_fd;
    Writable wr;
    {
        std::string err = z.tmpfs_mb > 0 ? wr.init(mounts, z.tmpfs_mb, z.uid, z.gid)
                                         : recreate_workdir(z.workdir, z.uid, z.gid);
        if (!err.empty()) throw SysError(err, errno);
    }
    // the generation filter's long part, once (each child adds a short filter of its own)
    if (z.seccomp && !install_zygote_seccomp()) throw SysError("seccomp filter in the zygote", errno);
    std::deque<Pending> pending;  // frames that arrived while a generation ran, in order
    int64_t oom_base = -1;        // the cgroup's OOM kill count when the next generation starts
    for (;;) {
        Pending cur;
        if (!pending.empty()) {
            cur = std::move(pending.front());
            pending.pop_front();
        } else if (recv_frame_blocking(z.sock, cur.f, cur.fds, kMaxRunPayload) != 1) {
            return py::none();
        }
        const uint32_t seq = cur.f.seq;
        if (cur.f.type == kBench) {
            FieldReader r(cur.f.payload);
            int64_t n = r.i64();
            FieldWriter w;
            w.i64(bench_forks(static_cast<long>(n)));
            send_frame_blocking(z.sock, kBenchResult, seq, w.str());
            continue;
        }
        if (cur.f.type != kRun) continue;  // an idle KILL (its generation already ended) and the like
        ChildConfig c;
        std::string fn_name, source;
        if (cur.fds.size() != 1 || !parse_run(cur.f.payload, c, fn_name, source)) {
            send_text(z.sock, kZygoteError, seq, "malformed RUN frame");
            continue;
        }
        c.ctl_fd = cur.fds[0].get();
        c.expected_parent = getpid();
        c.workdir = z.workdir.c_str();
        c.uid = z.uid;
        c.gid = z.gid;
        c.seccomp = z.seccomp;
        for (int fd : z.cg_reset) pwrite(fd, "0", 1, 0);
        // the OOM count cannot move between generations (nothing of a generation runs then): the count
        // read after the last one is this one's start
        if (oom_base < 0) oom_base = read_oom_kills(z);
        int64_t oom0 = oom_base;
        int64_t peak0 = read_peak(z);  // what the cgroup holds already (the zygote is in it)
        // every generation's processes get the same PIDs, whatever the one before forked
        if (z.last_pid_fd >= 0) pwrite(z.last_pid_fd, "1", 1, 0);
        int64_t fork_ns = now_ns();

        PyOS_BeforeFork();
        pid_t pid = fork();
        if (pid == 0) {
            PyOS_AfterFork_Child();
            child_begin_generation(seq);
            const char* what = "";
            int rc = 0;
            // born in the zygote's cgroup: the OOM killer's first pick (1000) instead of the zygote; written
            // while still root (after the uid change /proc/self is no longer ours to write)
            if (!z.child_oom_adj.empty()) {
                int fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
                ssize_t len = static_cast<ssize_t>(z.child_oom_adj.size());
                if (fd < 0 || ::write(fd, z.child_oom_adj.data(), z.child_oom_adj.size()) != len) {
                    rc = -1;
                    what = "setting oom_score_adj";
                }
                if (fd >= 0) ::close(fd);
            }
            if (rc == 0 && z.new_ipc && ::unshare(CLONE_NEWIPC) != 0) {
                rc = -1;
                what = "unshare(CLONE_NEWIPC)";
            }
            if (rc == 0) rc = enter_child_core(c, &what);
            if (rc != 0) {
                std::string msg = std::string("sandbox setup failed in the generation child: ") + what + ": " +
                                  std::strerror(errno);
                FieldWriter w;
                w.bytes(msg);
                if (!send_frame_blocking(3, kSetupError, seq, w.str())) send_frame_blocking(c.ctl_fd, kSetupError, seq, w.str());
                _exit(112);
            }
            py::object fn = fn_name.empty() ? py::object(py::none()) : py::object(py::str(fn_name));
            return py::make_tuple(fn, py::bytes(source));
        }
        PyOS_AfterFork_Parent();
        cur.fds.clear();  // the child holds the control socket now
        if (pid < 0) {
            send_text(z.sock, kZygoteError, seq, std::string("fork failed: ") + std::strerror(errno));
            continue;
        }
        {
            FieldWriter w;
            w.i64(fork_ns);
            if (!send_frame_blocking(z.sock, kStarted, seq, w.str())) kill_tree(z, pid);
        }
        if (z.tmpfs_mb > 0) wr.while_running();
        UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
        int status = 0;
        struct rusage ru;
        std::memset(&ru, 0, sizeof(ru));
        bool killed = false, eof = false;
        int64_t reaped_ns = -1;
        for (;;) {
            struct pollfd pf[2];
            int n = 0;
            pf[n++] = {z.sock, static_cast<short>(eof ? 0 : POLLIN), 0};
            if (pidfd) pf[n++] = {pidfd.get(), POLLIN, 0};
            int pr = ::poll(pf, static_cast<nfds_t>(n), pidfd ? -1 : 5);
            if (pr < 0 && errno != EINTR) break;
            if (pr > 0 && !eof && (pf[0].revents & (POLLIN | POLLHUP | POLLERR))) {
                Pending nx;
                if (recv_frame_blocking(z.sock, nx.f, nx.fds, kMaxRunPayload) != 1) {
                    eof = true;  // supervisor gone: kill the generation and exit after reaping it
                    kill_tree(z, pid);
                } else if (nx.f.type == kKill) {
                    if (nx.f.seq == seq && !killed) {
                        killed = true;
                        kill_tree(z, pid);
                    }
                } else {
                    pending.push_back(std::move(nx));  // the next request: served after this generation
                }
            }
            pid_t r = ::wait4(pid, &status, pidfd && pr > 0 && (pf[1].revents & POLLIN) ? 0 : WNOHANG, &ru);
            if (r == pid) {
                reaped_ns = now_ns();
                break;
            }
            if (r < 0 && errno != EINTR) break;
        }
        pidfd.reset();
        kill_strays(z, pid);
        int64_t oom1 = read_oom_kills(z);
        oom_base = oom1;
        int64_t peak = read_peak(z);
        if (peak >= 0 && peak0 >= 0) peak = peak > peak0 ? peak - peak0 : 0;
        if (eof) return py::none();
        FieldWriter w;
        w.i32(status)
            .f64(ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6)
            .f64(ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6)
            .i64(ru.ru_maxrss)
            .i64(oom0 >= 0 && oom1 >= 0 ? oom1 - oom0 : -1)
            .i64(peak)
            .i64(reaped_ns >= 0 ? reaped_ns : now_ns());
        if (!send_frame_blocking(z.sock, kExit, seq, w.str())) return py::none();
        // fresh writable directories for the next generation (after EXIT: the supervisor may already use
        // this generation's result; the next RUN is read only after this)
        std::string err = z.tmpfs_mb > 0 ? wr.swap() : recreate_workdir(z.workdir, z.uid, z.gid);
        if (!err.empty()) {
            // the worker cannot promise a clean next generation: report it to whichever generation the
            // supervisor runs now (sequence 0) and stop (the supervisor starts a fresh zygote)
            send_text(z.sock, kZygoteError, 0, "could not recreate the writable directories: " + err + ": " +
                                                   std::strerror(errno));
            return py::none();
        }
    }
}

void init_zygote(py::module_& m) {
    py::module_ sb = m.attr("sandbox").cast<py::module_>();
    sb.def("zygote_loop", &zygote_loop, py::arg("sock"), py::arg("workdir"), py::arg("uid"), py::arg("gid"),
           py::arg("pid1"), py::arg("seccomp"), py::arg("tmpfs_mb"), py::arg("mounts"), py::arg("new_ipc"),
           py::arg("child_oom_adj"), py::arg("cg_reset"), py::arg("cg_oom"), py::arg("cg_peak"),
           py::arg("last_pid_fd") = -1,
           "Serve generations until the supervisor closes the socket (returns None); in a forked child, "
           "returns (fn_name | None, source) with the sandbox entered.");
}

}  // namespace mcf
