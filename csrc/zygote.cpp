// The zygote's serve loop, in C++ so that the zygote runs no Python while a generation child is alive
// (Python's reference counting would copy-on-write shared pages in both processes). The loop reads
// frames from the supervisor, forks one child per RUN frame and, in that child, enters the sandbox and
// returns to Python with the program; in the zygote it reports STARTED, waits for the child (pidfd),
// honours KILL frames of that generation, kills whatever the generation left running, recreates the
// writable directories (a fresh tmpfs each, or removal without depth limit where there is no mount
// namespace), reads the generation's cgroup counters and reports EXIT. Every frame carries the
// generation's sequence number.
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
    long tmpfs_mb = 0;                  // > 0: every writable dir is a fresh tmpfs per generation
    std::vector<std::string> shm_dirs;  // world-writable dirs (/dev/shm) remounted per generation
    bool new_ipc = false;               // each generation child gets a fresh IPC namespace
    std::vector<int> cg_procs;          // cgroup.procs files the child joins ("0" = itself)
    std::vector<int> cg_reset;          // counters reset before each generation
    int cg_oom = -1;                    // memory.oom_control (v1) / memory.events (v2): "oom_kill N"
    int cg_peak = -1;                   // memory.max_usage_in_bytes (v1) / memory.peak (v2)
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

bool fresh_tmpfs(const std::string& path, long mb, const char* mode, int uid, int gid) {
    ::umount2(path.c_str(), MNT_DETACH);  // EINVAL the first time (not yet a mount point): fine
    std::string opts = "size=" + std::to_string(mb) + "m,mode=" + mode;
    if (uid >= 0) opts += ",uid=" + std::to_string(uid) + ",gid=" + std::to_string(gid);
    return ::mount("tmpfs", path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) == 0;
}

// The work dir (and /dev/shm) as a fresh process would find them: new, empty, no xattrs, new times.
// Returns "" or the step that failed.
std::string recreate_dirs(const Zy& z) {
    if (z.tmpfs_mb > 0) {
        if (!fresh_tmpfs(z.workdir, z.tmpfs_mb, "0700", z.uid, z.gid)) return "mount tmpfs " + z.workdir;
        for (auto& d : z.shm_dirs)
            if (!fresh_tmpfs(d, z.tmpfs_mb, "1777", -1, -1)) return "mount tmpfs " + d;
        return "";
    }
    // no mount namespace: remove the work dir at any depth and make a new one
    int fd = open(z.workdir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        fchmod(fd, 0700);
        if (!remove_contents(fd)) return "emptying " + z.workdir;
    }
    if (rmdir(z.workdir.c_str()) != 0 && errno != ENOENT && unlink(z.workdir.c_str()) != 0) return "rmdir " + z.workdir;
    if (mkdir(z.workdir.c_str(), 0700) != 0) return "mkdir " + z.workdir;
    if (z.uid >= 0 && chown(z.workdir.c_str(), z.uid, z.gid) != 0) return "chown " + z.workdir;
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
                       const std::vector<std::string>& shm_dirs, bool new_ipc, const std::vector<int>& cg_procs,
                       const std::vector<int>& cg_reset, int cg_oom, int cg_peak) {
    Zy z;
    z.sock = sock;
    z.workdir = workdir;
    z.uid = uid;
    z.gid = gid;
    z.pid1 = pid1;
    z.seccomp = seccomp;
    z.tmpfs_mb = tmpfs_mb;
    z.shm_dirs = shm_dirs;
    z.new_ipc = new_ipc;
    z.cg_procs = cg_procs;
    z.cg_reset = cg_reset;
    z.cg_oom = cg_oom;
    z.cg_peak = cg_peak;
    {
        std::string err = recreate_dirs(z);
        if (!err.empty()) throw SysError(err, errno);
    }
    std::deque<Pending> pending;  // frames that arrived while a generation ran, in order
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
        int64_t oom0 = read_oom_kills(z);
        int64_t fork_ns = now_ns();

        PyOS_BeforeFork();
        pid_t pid = fork();
        if (pid == 0) {
            PyOS_AfterFork_Child();
            child_begin_generation(seq);
            const char* what = "";
            int rc = 0;
            for (int fd : z.cg_procs) {
                if (rc == 0 && pwrite(fd, "0", 1, 0) != 1) {
                    rc = -1;
                    what = "joining the generation's cgroup";
                }
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
        int64_t peak = read_peak(z);
        std::string err = recreate_dirs(z);
        if (eof) return py::none();
        if (!err.empty()) {
            // the worker cannot promise a clean next generation: report and stop (the supervisor starts a
            // fresh zygote)
            send_text(z.sock, kZygoteError, seq, "could not recreate the writable directories: " + err + ": " +
                                                     std::strerror(errno));
            return py::none();
        }
        FieldWriter w;
        w.i32(status)
            .f64(ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6)
            .f64(ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6)
            .i64(ru.ru_maxrss)
            .i64(oom0 >= 0 && oom1 >= 0 ? oom1 - oom0 : -1)
            .i64(peak)
            .i64(reaped_ns >= 0 ? reaped_ns : now_ns());
        if (!send_frame_blocking(z.sock, kExit, seq, w.str())) return py::none();
    }
}

void init_zygote(py::module_& m) {
    py::module_ sb = m.attr("sandbox").cast<py::module_>();
    sb.def("zygote_loop", &zygote_loop, py::arg("sock"), py::arg("workdir"), py::arg("uid"), py::arg("gid"),
           py::arg("pid1"), py::arg("seccomp"), py::arg("tmpfs_mb"), py::arg("shm_dirs"), py::arg("new_ipc"),
           py::arg("cg_procs"), py::arg("cg_reset"), py::arg("cg_oom"), py::arg("cg_peak"),
           "Serve generations until the supervisor closes the socket (returns None); in a forked child, "
           "returns (fn_name | None, source) with the sandbox entered.");
}

}  // namespace mcf
