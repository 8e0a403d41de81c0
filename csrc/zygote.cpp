// The zygote's serve loop, in C++ so that the zygote runs no Python while a generation child is alive
// (Python's reference counting would copy-on-write shared pages in both processes). The loop reads
// frames from the supervisor, forks one child per RUN frame and, in that child, enters the sandbox and
// returns to Python with the program; in the zygote it waits for the child (pidfd), honours KILL frames,
// kills whatever the generation left running, empties the writable directories and reports EXIT.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
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
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "executor.h"

namespace py = pybind11;

namespace mcf {
namespace {

bool read_exact(int fd, char* p, size_t n) {
    while (n > 0) {
        ssize_t k = ::read(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        p += k;
        n -= static_cast<size_t>(k);
    }
    return true;
}

bool send_all(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        p += k;
        n -= static_cast<size_t>(k);
    }
    return true;
}

bool send_frame(int fd, uint32_t type, const std::string& payload) {
    FrameHeader h{kFrameMagic, type, static_cast<uint64_t>(payload.size())};
    std::string buf(reinterpret_cast<const char*>(&h), sizeof(h));
    buf += payload;
    return send_all(fd, buf.data(), buf.size());
}

// Reads one frame (blocking). Returns false on EOF or a corrupt stream.
bool recv_frame(int fd, uint32_t& type, std::string& payload, std::vector<int>& fds) {
    fds.clear();
    FrameHeader h;
    size_t got = 0;
    char* hp = reinterpret_cast<char*>(&h);
    while (got < sizeof(h)) {
        struct iovec iov = {hp + got, sizeof(h) - got};
        char cbuf[CMSG_SPACE(sizeof(int) * 8)];
        struct msghdr msg;
        std::memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf;
        msg.msg_controllen = sizeof(cbuf);
        ssize_t k = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < n; ++i) {
                    int v;
                    std::memcpy(&v, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                    fds.push_back(v);
                }
            }
        }
        got += static_cast<size_t>(k);
    }
    if (h.magic != kFrameMagic || h.length > (1ull << 34)) return false;
    type = h.type;
    payload.resize(h.length);
    return h.length == 0 || read_exact(fd, &payload[0], h.length);
}

// Removes everything inside the directory open as dfd (not the directory itself). Depth-limited.
void empty_dir_at(int dfd, int depth) {
    DIR* d = fdopendir(dfd);
    if (!d) {
        ::close(dfd);
        return;
    }
    std::vector<std::string> names;
    while (struct dirent* e = readdir(d)) {
        if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
        names.emplace_back(e->d_name);
    }
    int fd = dirfd(d);
    for (auto& n : names) {
        if (unlinkat(fd, n.c_str(), 0) == 0) continue;
        if (errno == EISDIR || errno == EPERM) {
            if (depth < 256) {
                int sub = openat(fd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub >= 0) {
                    fchmod(sub, 0700);
                    empty_dir_at(sub, depth + 1);
                }
            }
            unlinkat(fd, n.c_str(), AT_REMOVEDIR);
        }
    }
    closedir(d);
}

// Empties `path` if it has any entries. Returns false if it could not be opened as a real directory.
bool empty_dir(const char* path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return false;
    empty_dir_at(fd, 0);
    return true;
}

struct Zy {
    int sock = 3;
    std::string workdir;
    int uid = -1, gid = -1;
    bool pid1 = false;
    bool seccomp = false;
    std::vector<std::string> shared_dirs;
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

void reset_workdir(const Zy& z) {
    struct stat st;
    uid_t owner = z.uid >= 0 ? static_cast<uid_t>(z.uid) : getuid();
    bool ok = lstat(z.workdir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == owner;
    if (ok) {
        chmod(z.workdir.c_str(), 0700);
        ok = empty_dir(z.workdir.c_str());
    }
    if (!ok) {
        // replaced or unreadable: remove whatever is there and make a fresh one
        if (unlink(z.workdir.c_str()) != 0) {
            empty_dir(z.workdir.c_str());
            rmdir(z.workdir.c_str());
        }
        mkdir(z.workdir.c_str(), 0700);
        if (z.uid >= 0) chown(z.workdir.c_str(), z.uid, z.gid);
    }
    for (auto& d : z.shared_dirs) empty_dir(d.c_str());
}

// RUN payload: "fn_name as_bytes cpu_s fsize nproc nofile stack\n" + source. fn_name "-" = stdin mode.
bool parse_run(const std::string& payload, ChildConfig& c, std::string& fn_name, size_t& src_off) {
    size_t nl = payload.find('\n');
    if (nl == std::string::npos) return false;
    std::string head = payload.substr(0, nl);
    char name[256];
    long long v[6];
    if (std::sscanf(head.c_str(), "%255s %lld %lld %lld %lld %lld %lld", name, &v[0], &v[1], &v[2], &v[3], &v[4],
                    &v[5]) != 7)
        return false;
    fn_name = name;
    c.as_bytes = v[0];
    c.cpu_s = v[1];
    c.fsize = v[2];
    c.nproc = v[3];
    c.nofile = v[4];
    c.stack = v[5];
    src_off = nl + 1;
    return true;
}

}  // namespace

// Serve the supervisor until EOF (returns None: the zygote should exit). In a forked generation child
// it returns (fn_name | None, source bytes) with the sandbox already entered and fd 3 = control socket.
py::object zygote_loop(int sock, const std::string& workdir, int uid, int gid, bool pid1, bool seccomp,
                       const std::vector<std::string>& shared_dirs) {
    Zy z;
    z.sock = sock;
    z.workdir = workdir;
    z.uid = uid;
    z.gid = gid;
    z.pid1 = pid1;
    z.seccomp = seccomp;
    z.shared_dirs = shared_dirs;
    uint32_t type;
    std::string payload;
    std::vector<int> fds;
    // a frame that arrived while a generation was running (the supervisor pipelines the next RUN)
    bool have_pending = false;
    uint32_t p_type = 0;
    std::string p_payload;
    std::vector<int> p_fds;
    for (;;) {
        if (have_pending) {
            have_pending = false;
            type = p_type;
            payload.swap(p_payload);
            fds.swap(p_fds);
        } else if (!recv_frame(z.sock, type, payload, fds)) {
            return py::none();
        }
        if (type == kBench) {
            long n = std::strtol(payload.c_str(), nullptr, 10);
            if (n <= 0) n = 200;
            struct timespec a, b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            for (long i = 0; i < n; ++i) {
                pid_t p = fork();
                if (p == 0) _exit(0);
                int st;
                while (p > 0 && waitpid(p, &st, 0) < 0 && errno == EINTR) {
                }
            }
            clock_gettime(CLOCK_MONOTONIC, &b);
            long long ns = ((b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec)) / n;
            send_frame(z.sock, kBenchResult, std::to_string(ns));
            for (int fd : fds) ::close(fd);
            continue;
        }
        if (type != kRun || fds.size() != 1) {
            for (int fd : fds) ::close(fd);  // an idle KILL (its generation already ended) and the like
            continue;
        }
        ChildConfig c;
        std::string fn_name;
        size_t src_off = 0;
        if (!parse_run(payload, c, fn_name, src_off)) {
            ::close(fds[0]);
            send_frame(z.sock, kZygoteError, "malformed RUN frame");
            continue;
        }
        c.ctl_fd = fds[0];
        c.expected_parent = getpid();
        c.workdir = z.workdir.c_str();
        c.uid = z.uid;
        c.gid = z.gid;
        c.seccomp = z.seccomp;

        PyOS_BeforeFork();
        pid_t pid = fork();
        if (pid == 0) {
            PyOS_AfterFork_Child();
            const char* what = "";
            if (enter_child_core(c, &what) != 0) {
                std::string msg = std::string("sandbox setup failed in the generation child: ") + what + ": " +
                                  std::strerror(errno);
                if (!send_frame(3, kSetupError, msg)) send_frame(c.ctl_fd, kSetupError, msg);
                _exit(112);
            }
            py::object fn = fn_name == "-" ? py::object(py::none()) : py::object(py::str(fn_name));
            py::bytes src(payload.data() + src_off, payload.size() - src_off);
            return py::make_tuple(fn, src);
        }
        PyOS_AfterFork_Parent();
        ::close(fds[0]);
        if (pid < 0) {
            send_frame(z.sock, kZygoteError, std::string("fork failed: ") + std::strerror(errno));
            continue;
        }
        int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
        int status = 0;
        struct rusage ru;
        std::memset(&ru, 0, sizeof(ru));
        bool killed = false, eof = false;
        for (;;) {
            struct pollfd pf[2];
            int n = 0;
            pf[n++] = {z.sock, static_cast<short>(eof || have_pending ? 0 : POLLIN), 0};
            if (pidfd >= 0) pf[n++] = {pidfd, POLLIN, 0};
            int pr = ::poll(pf, static_cast<nfds_t>(n), pidfd >= 0 ? -1 : 5);
            if (pr < 0 && errno != EINTR) break;
            if (pr > 0 && !eof && !have_pending && (pf[0].revents & (POLLIN | POLLHUP | POLLERR))) {
                uint32_t t2;
                std::string p2;
                std::vector<int> f2;
                if (!recv_frame(z.sock, t2, p2, f2)) {
                    eof = true;  // supervisor gone: kill the generation and exit after reaping it
                    kill_tree(z, pid);
                } else if (t2 == kKill) {
                    for (int fd : f2) ::close(fd);
                    if (!killed) {
                        killed = true;
                        kill_tree(z, pid);
                    }
                } else {
                    // the next request: keep it (and stop reading) until this generation is reaped
                    have_pending = true;
                    p_type = t2;
                    p_payload.swap(p2);
                    p_fds.swap(f2);
                }
            }
            pid_t r = ::wait4(pid, &status, pidfd >= 0 && pr > 0 && (pf[1].revents & POLLIN) ? 0 : WNOHANG, &ru);
            if (r == pid) break;
            if (r < 0 && errno != EINTR) break;
        }
        if (pidfd >= 0) ::close(pidfd);
        kill_strays(z, pid);
        reset_workdir(z);
        if (eof) return py::none();
        char buf[256];
        std::snprintf(buf, sizeof(buf),
                      "{\"status\": %d, \"utime\": %.6f, \"stime\": %.6f, \"maxrss_kb\": %ld, \"minflt\": %ld}",
                      status, ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6,
                      ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6, static_cast<long>(ru.ru_maxrss),
                      static_cast<long>(ru.ru_minflt));
        if (!send_frame(z.sock, kExit, buf)) return py::none();
    }
}

// --- helpers for the harness inside a generation child (fewer Python objects touched = fewer pages copied)

// The I/O sets this generation child holds (see the Zygote class in supervisor.cpp): stdin, stdout, stderr memfds.
struct ChildSet {
    int in = -1, out = -1, err = -1;
};
std::vector<ChildSet> g_sets;
// identity (st_dev, st_ino) of what fds 0, 1, 2 and 3 must hold while the current test runs
struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
};
FileId g_expect[4];
bool g_have_expect = false;

bool file_id(int fd, FileId& id) {
    struct stat st;
    if (fstat(fd, &st) != 0) return false;
    id.dev = st.st_dev;
    id.ino = st.st_ino;
    return true;
}

bool pwrite_all(int fd, const char* p, size_t n) {
    off_t off = 0;
    while (n > 0) {
        ssize_t k = ::pwrite(fd, p, n, off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        p += k;
        off += k;
        n -= static_cast<size_t>(k);
    }
    return true;
}

// Lays out fds 0/1/2 for a TEST frame ("index last set inline\n" + input): the set's output files emptied
// and rewound, its stdin file holding the input (or the frame's extra memfd when not inline).
bool prepare_test_fds(const std::string& payload, std::vector<int>& fds, std::string& head) {
    size_t nl = payload.find('\n');
    if (nl == std::string::npos) return false;
    head = payload.substr(0, nl);
    long index = 0, last = 0, set = 0, inl = 1;
    if (std::sscanf(head.c_str(), "%ld %ld %ld %ld", &index, &last, &set, &inl) != 4 || set < 0 || set > 4096)
        return false;
    size_t want_extra = inl ? 0 : 1;
    if (fds.size() == 3 + want_extra) {
        if (g_sets.size() <= static_cast<size_t>(set)) g_sets.resize(static_cast<size_t>(set) + 1);
        ChildSet& cs = g_sets[static_cast<size_t>(set)];
        for (int* f : {&cs.in, &cs.out, &cs.err}) {
            if (*f > 3) ::close(*f);
        }
        cs = {fds[0], fds[1], fds[2]};
        fds.erase(fds.begin(), fds.begin() + 3);
    } else if (fds.size() != want_extra) {
        return false;
    }
    if (g_sets.size() <= static_cast<size_t>(set)) return false;
    const ChildSet& cs = g_sets[static_cast<size_t>(set)];
    if (cs.in < 0) return false;
    for (int f : {cs.out, cs.err}) {
        if (ftruncate(f, 0) != 0 || lseek(f, 0, SEEK_SET) != 0) return false;
    }
    if (inl) {
        if (ftruncate(cs.in, 0) != 0) return false;
        if (!pwrite_all(cs.in, payload.data() + nl + 1, payload.size() - nl - 1)) return false;
        if (lseek(cs.in, 0, SEEK_SET) != 0 || dup2(cs.in, 0) < 0) return false;
    } else {
        if (dup2(fds[0], 0) < 0) return false;
        ::close(fds[0]);
        fds.clear();
    }
    if (dup2(cs.out, 1) < 0 || dup2(cs.err, 2) < 0) return false;
    for (int i = 0; i < 4; ++i) {
        if (!file_id(i, g_expect[i])) return false;
    }
    g_have_expect = true;
    size_t sp = head.find(' ', head.find(' ') + 1);
    head.resize(sp == std::string::npos ? head.size() : sp);  // "index last" for the harness
    return true;
}

// Blocking: the next frame from the supervisor. For a TEST frame, fds 0/1/2 are laid out here and the
// payload returned is "index last". Returns (type, payload); (0, b"") on EOF or a test whose descriptors
// could not be set up (the harness then exits; the supervisor sees the test die).
py::tuple child_next(int fd) {
    uint32_t type = 0;
    std::string payload, head;
    std::vector<int> fds;
    bool ok;
    {
        py::gil_scoped_release nogil;
        ok = recv_frame(fd, type, payload, fds);
        if (ok && type == kTest) {
            ok = prepare_test_fds(payload, fds, head);
            payload.swap(head);
        }
        for (int f : fds) {
            if (f > 3) ::close(f);
        }
    }
    if (!ok) return py::make_tuple(0, py::bytes());
    return py::make_tuple(type, py::bytes(payload));
}

// False if the program closed or replaced one of the harness' descriptors: fds 0/1/2 (not the test's
// files any more: an object of the program's could close them under a later test), the control socket
// (3), or a set's files. The harness then ends this child after reporting the test.
bool child_fds_ok() {
    if (fcntl(3, F_GETFD) < 0) return false;
    if (g_have_expect) {
        for (int i = 0; i < 4; ++i) {
            FileId id;
            if (!file_id(i, id) || id.dev != g_expect[i].dev || id.ino != g_expect[i].ino) return false;
        }
    }
    for (const ChildSet& cs : g_sets) {
        for (int f : {cs.in, cs.out, cs.err}) {
            if (f >= 0 && fcntl(f, F_GETFD) < 0) return false;
        }
    }
    return true;
}

bool child_send(int fd, uint32_t type, const std::string& payload) {
    py::gil_scoped_release nogil;
    return send_frame(fd, type, payload);
}

// (cpu seconds of this process, cpu seconds of its reaped children, max RSS KiB of either)
py::tuple usage() {
    struct rusage s, c;
    getrusage(RUSAGE_SELF, &s);
    getrusage(RUSAGE_CHILDREN, &c);
    auto secs = [](const struct rusage& r) {
        return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) * 1e-6;
    };
    long rss = s.ru_maxrss > c.ru_maxrss ? s.ru_maxrss : c.ru_maxrss;
    return py::make_tuple(secs(s), secs(c), rss);
}

// True if `live` holds exactly the key -> object pairs of `snap` (same objects, not equal ones). Uses
// borrowed references only: a Python-level loop would incref every value and so copy-on-write every
// page holding one of them in a forked child.
bool dict_is_snapshot(py::handle live, py::handle snap) {
    PyObject* l = live.ptr();
    PyObject* s = snap.ptr();
    if (!PyDict_Check(l) || !PyDict_Check(s)) throw py::type_error("dict_is_snapshot takes two dicts");
    if (PyDict_Size(l) != PyDict_Size(s)) return false;
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(s, &pos, &k, &v)) {
        PyObject* got = PyDict_GetItemWithError(l, k);
        if (got != v) {
            PyErr_Clear();
            return false;
        }
    }
    return true;
}

void init_zygote_loop(py::module_& m) {
    py::module_ sb = m.attr("sandbox").cast<py::module_>();
    sb.def("child_next", &child_next, py::arg("fd"));
    sb.def("child_send", [](int fd, uint32_t type, py::bytes payload) { return child_send(fd, type, std::string(payload)); },
           py::arg("fd"), py::arg("type"), py::arg("payload"));
    sb.def("usage", &usage);
    sb.def("child_fds_ok", &child_fds_ok);
    sb.def("dict_is_snapshot", &dict_is_snapshot, py::arg("live"), py::arg("snap"));
    sb.def("zygote_loop", &zygote_loop, py::arg("sock"), py::arg("workdir"), py::arg("uid"), py::arg("gid"),
           py::arg("pid1"), py::arg("seccomp"), py::arg("shared_dirs"),
           "Serve generations until the supervisor closes the socket (returns None); in a forked child, "
           "returns (fn_name | None, source) with the sandbox entered.");
}

}  // namespace mcf
