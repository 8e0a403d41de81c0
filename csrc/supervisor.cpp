// Supervisor side of the executor: runs inside the caller's process (which may hold CUDA state and
// threads, so it never forks). It starts zygotes with posix_spawn and drives generation children over
// sockets and pipes: reads stdout with an output cap, keeps a stderr tail, enforces wall-clock deadlines.
// Every blocking call releases the GIL so several workers progress in parallel from Python threads.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/stl.h>

#include "executor.h"

namespace py = pybind11;

namespace mcf {
namespace {

double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::runtime_error os_error(const std::string& what, int err) {
    return std::runtime_error(what + ": " + std::strerror(err));
}

void close_fd(int& fd) {
    if (fd >= 0) {
        ::close(fd);
        fd = -1;
    }
}

// Write everything to a socket (MSG_NOSIGNAL: a dead peer is an error, never a SIGPIPE in the caller).
bool send_all(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pf = {fd, POLLOUT, 0};
                ::poll(&pf, 1, 1000);
                continue;
            }
            return false;
        }
        p += k;
        n -= static_cast<size_t>(k);
    }
    return true;
}

bool write_all(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t k = ::write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += k;
        n -= static_cast<size_t>(k);
    }
    return true;
}

// One frame: header (with the fds attached as SCM_RIGHTS) then the payload.
bool send_frame(int sock, uint32_t type, const std::string& payload, const std::vector<int>& fds) {
    FrameHeader h{kFrameMagic, type, static_cast<uint64_t>(payload.size())};
    struct iovec iov = {&h, sizeof(h)};
    struct msghdr msg;
    std::memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> cbuf;
    if (!fds.empty()) {
        cbuf.assign(CMSG_SPACE(sizeof(int) * fds.size()), 0);
        msg.msg_control = cbuf.data();
        msg.msg_controllen = cbuf.size();
        struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t k;
    do {
        k = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (k < 0 && errno == EINTR);
    if (k < 0) return false;
    if (static_cast<size_t>(k) < sizeof(h)) {
        if (!send_all(sock, reinterpret_cast<const char*>(&h) + k, sizeof(h) - static_cast<size_t>(k)))
            return false;
    }
    return send_all(sock, payload.data(), payload.size());
}

// Parses complete frames out of a byte buffer. Returns false on a corrupt header.
bool pop_frame(std::string& buf, uint32_t& type, std::string& payload, uint64_t max_len, bool& too_big) {
    too_big = false;
    if (buf.size() < sizeof(FrameHeader)) return false;
    FrameHeader h;
    std::memcpy(&h, buf.data(), sizeof(h));
    if (h.magic != kFrameMagic || h.length > max_len) {
        too_big = true;
        return false;
    }
    if (buf.size() < sizeof(h) + h.length) return false;
    type = h.type;
    payload.assign(buf, sizeof(h), h.length);
    buf.erase(0, sizeof(h) + h.length);
    return true;
}

// Read what is available from a non-blocking fd. Returns bytes read, 0 on EOF, -1 if nothing now.
ssize_t read_some(int fd, char* tmp, size_t cap) {
    for (;;) {
        ssize_t k = ::read(fd, tmp, cap);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -1;
        if (k < 0) return 0;  // treat errors as EOF
        return k;
    }
}

void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

}  // namespace

// One zygote and the generation it is running. Not thread-safe: one Python thread drives one Zygote.
//
// Test I/O goes through S "sets" of three memfds (stdin, stdout, stderr) that the Zygote creates once and
// keeps for its lifetime: test j of a generation uses set j % S, and a child receives a set's descriptors
// with the first TEST frame that uses it. At the start of each test the child itself empties the set's
// files and writes the test's input into its stdin file (the input travels in the TEST frame; an input
// too large for the child's RLIMIT_FSIZE comes instead as a fresh memfd). With at most S tests handed
// ahead, test j + S is sent only after test j's output has been read, so outputs never mix; the
// supervisor empties both output files right after reading them, so output a program wrote anywhere else
// can never be mistaken for the next test's. Earlier generations are reaped by the zygote before the next
// child is forked, so nothing of theirs can write into a set either. Creating and destroying three memfds
// per test cost ~75 us of kernel time here; this costs a few syscalls. The output cap is enforced twice:
// RLIMIT_FSIZE in the child (SIGXFSZ) and the size check here.
class Zygote {
public:
    Zygote(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
        if (argv.empty()) throw std::invalid_argument("Zygote needs a command line");
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
            throw os_error("socketpair", errno);
        std::vector<char*> av, ev;
        for (auto& s : argv) av.push_back(const_cast<char*>(s.c_str()));
        av.push_back(nullptr);
        for (auto& s : env) ev.push_back(const_cast<char*>(s.c_str()));
        ev.push_back(nullptr);

        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        // The zygote gets exactly: fd 0 = /dev/null, 1/2 inherited (diagnostics), 3 = its control socket.
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
#if defined(__GLIBC__) && ((__GLIBC__ > 2) || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
        posix_spawn_file_actions_addclosefrom_np(&fa, 4);
#endif
        posix_spawnattr_t at;
        posix_spawnattr_init(&at);
        sigset_t none, all;
        sigemptyset(&none);
        sigfillset(&all);
        sigdelset(&all, SIGKILL);
        sigdelset(&all, SIGSTOP);
        posix_spawnattr_setsigmask(&at, &none);
        posix_spawnattr_setsigdefault(&at, &all);
        short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
#ifdef POSIX_SPAWN_SETSID
        flags |= POSIX_SPAWN_SETSID;
#endif
        posix_spawnattr_setflags(&at, flags);
        pid_t pid = -1;
        int rc = posix_spawn(&pid, av[0], &fa, &at, av.data(), ev.data());
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
        ::close(sv[1]);
        if (rc != 0) {
            ::close(sv[0]);
            throw os_error(std::string("posix_spawn ") + argv[0], rc);
        }
        zpid_ = pid;
        zsock_ = sv[0];
        set_nonblock(zsock_);
    }

    ~Zygote() { close_all(1.0); }

    int pid() const { return zpid_; }

    // Wait for one frame from the zygote outside a generation (startup handshake, benchmark answer).
    // Returns (type, payload) or None on timeout; raises if the zygote died.
    py::object recv_zygote(double timeout_s) {
        uint32_t type = 0;
        std::string payload;
        int got;
        {
            py::gil_scoped_release nogil;
            got = recv_zygote_nogil(timeout_s, type, payload);
        }
        if (got == 0) return py::none();
        if (got < 0) throw std::runtime_error("the executor zygote exited (control socket closed)");
        return py::make_tuple(type, py::bytes(payload));
    }

    // Start a generation: a fresh control socketpair, one end handed to the zygote with the RUN frame.
    // `sets`: how many I/O sets this generation's tests rotate through (>= the tests handed ahead).
    bool start(const std::string& payload, int sets) {
        py::gil_scoped_release nogil;
        end_generation();
        if (sets < 1) sets = 1;
        gen_sets_ = sets;
        while (static_cast<int>(sets_.size()) < sets) {
            Set st;
            st.in = make_memfd("stdin");
            st.out = make_memfd("stdout");
            st.err = make_memfd("stderr");
            sets_.push_back(st);
        }
        handed_.assign(static_cast<size_t>(sets), false);
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw os_error("socketpair", errno);
        ctl_ = sv[0];
        set_nonblock(ctl_);
        cbuf_.clear();
        ctl_eof_ = false;
        bool ok = send_frame(zsock_, kRun, payload, {sv[1]});
        ::close(sv[1]);
        return ok;
    }

    // Send test `index` (the generation's last if `last`). Payload: "index last set inline\n" + input
    // when the input is at most inline_max bytes (the child writes it into its set's stdin file); else
    // the input comes as a fresh memfd, the frame's last descriptor. The set's three descriptors ride
    // along the first time this child uses the set. take_output(index) reads the result back.
    bool send_test(int index, bool last, const std::string& input, uint64_t inline_max) {
        py::gil_scoped_release nogil;
        if (ctl_ < 0 || ctl_eof_ || gen_sets_ < 1) return false;
        int s = index % gen_sets_;
        bool inl = input.size() <= inline_max;
        std::vector<int> fds;
        if (!handed_[static_cast<size_t>(s)]) {
            fds = {sets_[static_cast<size_t>(s)].in, sets_[static_cast<size_t>(s)].out,
                   sets_[static_cast<size_t>(s)].err};
            handed_[static_cast<size_t>(s)] = true;
        }
        int big = -1;
        if (!inl) {
            big = make_memfd("stdin");
            if (!write_all(big, input.data(), input.size())) {
                int e = errno;
                ::close(big);
                throw os_error("writing test input to memfd", e);
            }
            ::lseek(big, 0, SEEK_SET);
            fds.push_back(big);
        }
        std::string payload = std::to_string(index) + (last ? " 1 " : " 0 ") + std::to_string(s) +
                              (inl ? " 1\n" : " 0\n");
        if (inl) payload += input;
        bool ok = send_frame(ctl_, kTest, payload, fds);
        if (big >= 0) ::close(big);
        return ok;
    }

    bool send_end() {
        py::gil_scoped_release nogil;
        if (ctl_ < 0 || ctl_eof_) return false;
        return send_frame(ctl_, kEnd, std::string(), {});
    }

    bool send_zygote(uint32_t type, const std::string& payload) {
        py::gil_scoped_release nogil;
        return send_frame(zsock_, type, payload, {});
    }

    bool kill_generation() {
        py::gil_scoped_release nogil;
        return send_frame(zsock_, kKill, std::string(), {});
    }

    // Wait for the next event of the running generation, at most timeout_s seconds:
    //   ("ctl", type, payload)       a frame from the child
    //   ("exit", type, payload)      the zygote reaped the child and everything it started
    //   ("zygote", type, payload)    another zygote frame (an error report)
    //   ("timeout", 0, b"")
    //   ("ole", 0, b"")              the child sent a frame larger than the output cap allows
    //   ("zygote_dead", 0, b"")
    py::tuple wait_event(double timeout_s, uint64_t max_frame) {
        std::string kind;
        uint32_t type = 0;
        std::string payload;
        {
            py::gil_scoped_release nogil;
            kind = wait_nogil(timeout_s, max_frame, type, payload);
        }
        return py::make_tuple(kind, type, py::bytes(payload));
    }

    // Read back test `index`'s stdout (None if it passed out_cap bytes) and the last tail_cap bytes of its
    // stderr, then empty both files. Returns (stdout | None, stdout_size, stderr_tail).
    py::tuple take_output(int index, uint64_t out_cap, uint64_t tail_cap) {
        std::string out, tail;
        long long size = -1;
        bool over = false;
        {
            py::gil_scoped_release nogil;
            if (gen_sets_ >= 1 && index >= 0) {
                const Set& o = sets_[static_cast<size_t>(index % gen_sets_)];
                struct stat st;
                if (fstat(o.out, &st) == 0) size = st.st_size;
                if (size > static_cast<long long>(out_cap)) {
                    over = true;
                } else if (size > 0) {
                    out = pread_all(o.out, 0, static_cast<size_t>(size));
                }
                if (size != 0) ftruncate(o.out, 0);
                if (fstat(o.err, &st) == 0 && st.st_size > 0) {
                    uint64_t esz = static_cast<uint64_t>(st.st_size);
                    uint64_t off = esz > tail_cap ? esz - tail_cap : 0;
                    tail = pread_all(o.err, static_cast<off_t>(off), static_cast<size_t>(esz - off));
                    ftruncate(o.err, 0);
                }
            }
        }
        py::object o = over ? py::object(py::none()) : py::object(py::bytes(out));
        return py::make_tuple(o, size, py::bytes(tail));
    }

    bool zygote_alive() {
        if (zpid_ <= 0) return false;
        int st;
        pid_t r = ::waitpid(zpid_, &st, WNOHANG);
        if (r == zpid_) {
            zpid_ = -1;
            return false;
        }
        return r == 0;
    }

    // Close the zygote's socket (it exits on EOF), wait up to grace_s, then SIGKILL, and reap it.
    void close_all(double grace_s) {
        end_generation();
        close_sets();
        close_fd(zsock_);
        if (zpid_ > 0) {
            py::gil_scoped_release* rel = nullptr;
            if (PyGILState_Check()) rel = new py::gil_scoped_release();
            double deadline = now_s() + grace_s;
            int st;
            for (;;) {
                pid_t r = ::waitpid(zpid_, &st, WNOHANG);
                if (r == zpid_ || (r < 0 && errno == ECHILD)) break;
                if (now_s() >= deadline) {
                    ::kill(zpid_, SIGKILL);
                    while (::waitpid(zpid_, &st, 0) < 0 && errno == EINTR) {
                    }
                    break;
                }
                struct timespec ts = {0, 1000000};
                nanosleep(&ts, nullptr);
            }
            zpid_ = -1;
            delete rel;
        }
    }

    // Stop following the running generation without waiting for its EXIT report: the child has reported
    // everything needed (it exits by itself, or was sent END or KILL). The zygote reaps and cleans it
    // before it reads the next RUN frame; its EXIT frame is skipped when it arrives.
    void detach_generation() {
        end_generation();
        ++pending_exits_;
    }

    // Release the per-generation resources (the control socket; the I/O sets stay for the next one).
    void end_generation() {
        close_fd(ctl_);
        ctl_eof_ = true;
    }

private:
    struct Set {
        int in = -1;
        int out = -1;
        int err = -1;
    };

    void close_sets() {
        for (auto& st : sets_) {
            close_fd(st.in);
            close_fd(st.out);
            close_fd(st.err);
        }
        sets_.clear();
    }

    static int make_memfd(const char* name) {
        int fd = static_cast<int>(::syscall(SYS_memfd_create, name, 1u /* MFD_CLOEXEC */));
        if (fd < 0) throw os_error("memfd_create", errno);
        return fd;
    }

    static std::string pread_all(int fd, off_t off, size_t n) {
        std::string s(n, '\0');
        size_t got = 0;
        while (got < n) {
            ssize_t k = ::pread(fd, &s[got], n - got, off + static_cast<off_t>(got));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) break;
            got += static_cast<size_t>(k);
        }
        s.resize(got);
        return s;
    }

    int recv_zygote_nogil(double timeout_s, uint32_t& type, std::string& payload) {
        double deadline = now_s() + timeout_s;
        char tmp[65536];
        for (;;) {
            bool too_big;
            if (pop_frame(zbuf_, type, payload, 1ull << 40, too_big)) {
                if (type == kExit && pending_exits_ > 0) {
                    --pending_exits_;
                    continue;
                }
                return 1;
            }
            if (too_big) return -1;
            double rem = deadline - now_s();
            if (rem <= 0) return 0;
            struct pollfd pf = {zsock_, POLLIN, 0};
            int pr = ::poll(&pf, 1, static_cast<int>(rem * 1000) + 1);
            if (pr < 0 && errno != EINTR) return -1;
            if (pr <= 0) continue;
            ssize_t k = read_some(zsock_, tmp, sizeof(tmp));
            if (k == 0) return -1;
            if (k > 0) zbuf_.append(tmp, static_cast<size_t>(k));
        }
    }

    std::string wait_nogil(double timeout_s, uint64_t max_frame, uint32_t& type, std::string& payload) {
        double deadline = now_s() + timeout_s;
        static thread_local char tmp[1 << 16];
        for (;;) {
            bool too_big = false;
            if (ctl_ >= 0 && pop_frame(cbuf_, type, payload, max_frame, too_big)) return "ctl";
            if (too_big) {
                cbuf_.clear();
                ctl_eof_ = true;
                return "ole";
            }
            if (pop_frame(zbuf_, type, payload, 1ull << 32, too_big)) {
                if (type == kExit && pending_exits_ > 0) {  // a detached generation's report
                    --pending_exits_;
                    continue;
                }
                if (type == kExit) {
                    close_fd(ctl_);
                    ctl_eof_ = true;
                    return "exit";
                }
                return "zygote";
            }
            if (too_big) return "zygote_dead";
            double rem = deadline - now_s();
            if (rem <= 0) return "timeout";
            struct pollfd pf[2];
            int n = 0;
            pf[n++] = {zsock_, POLLIN, 0};
            int ictl = -1;
            if (ctl_ >= 0 && !ctl_eof_) {
                ictl = n;
                pf[n++] = {ctl_, POLLIN, 0};
            }
            int ms = static_cast<int>(rem * 1000.0) + 1;
            int pr = ::poll(pf, static_cast<nfds_t>(n), ms);
            if (pr < 0) {
                if (errno == EINTR) continue;
                throw os_error("poll", errno);
            }
            if (pr == 0) continue;
            if (ictl >= 0 && pf[ictl].revents) {
                for (;;) {
                    ssize_t k = read_some(ctl_, tmp, sizeof(tmp));
                    if (k > 0) {
                        cbuf_.append(tmp, static_cast<size_t>(k));
                        if (cbuf_.size() > max_frame + sizeof(FrameHeader)) break;
                        continue;
                    }
                    if (k == 0) ctl_eof_ = true;
                    break;
                }
            }
            if (pf[0].revents) {
                ssize_t k = read_some(zsock_, tmp, sizeof(tmp));
                if (k > 0)
                    zbuf_.append(tmp, static_cast<size_t>(k));
                else if (k == 0)
                    return "zygote_dead";
            }
        }
    }

    pid_t zpid_ = -1;
    int zsock_ = -1;
    std::string zbuf_;
    int ctl_ = -1;
    bool ctl_eof_ = true;
    std::string cbuf_;
    std::vector<Set> sets_;      // the Zygote's I/O sets (created on demand, kept until close)
    std::vector<bool> handed_;   // which sets the running child already holds
    int gen_sets_ = 0;
    int pending_exits_ = 0;
};

void init_supervisor(py::module_& m) {
    py::class_<Zygote>(m, "Zygote",
                       "One zygote process (started with posix_spawn) and the generation it runs. Driven "
                       "by microcoder_fast.executor.worker.Worker; not for direct use.")
        .def(py::init<const std::vector<std::string>&, const std::vector<std::string>&>(), py::arg("argv"),
             py::arg("env"))
        .def_property_readonly("pid", &Zygote::pid)
        .def("recv_zygote", &Zygote::recv_zygote, py::arg("timeout_s"))
        .def("start", [](Zygote& w, py::bytes payload, int sets) { return w.start(std::string(payload), sets); },
             py::arg("payload"), py::arg("sets"))
        .def("send_test",
             [](Zygote& w, int index, bool last, py::bytes input, uint64_t inline_max) {
                 return w.send_test(index, last, std::string(input), inline_max);
             },
             py::arg("index"), py::arg("last"), py::arg("input"), py::arg("inline_max"))
        .def("send_end", &Zygote::send_end)
        .def("send_zygote",
             [](Zygote& w, uint32_t type, py::bytes payload) { return w.send_zygote(type, std::string(payload)); })
        .def("kill_generation", &Zygote::kill_generation)
        .def("wait_event", &Zygote::wait_event, py::arg("timeout_s"), py::arg("max_frame"))
        .def("take_output", &Zygote::take_output, py::arg("index"), py::arg("out_cap"), py::arg("tail_cap"))
        .def("end_generation", &Zygote::end_generation)
        .def("detach_generation", &Zygote::detach_generation)
        .def("zygote_alive", &Zygote::zygote_alive)
        .def("close", &Zygote::close_all, py::arg("grace_s") = 1.0);
}

}  // namespace mcf
