// Supervisor side of the executor: runs inside the caller's process (which may hold CUDA state and
// threads, so it never forks). It starts zygotes with posix_spawn and drives generation children over
// sockets and memfds: reads stdout with an output cap, keeps a stderr tail, and never blocks on a
// program: every send is queued and written without blocking (frame.h's OutQueue), every wait has a
// deadline. Every blocking call releases the GIL so several workers progress in parallel from Python
// threads.
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
#include "fd.h"
#include "frame.h"

namespace py = pybind11;

namespace mcf {
namespace {

double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Read what is available from a non-blocking fd. Returns bytes read, 0 on EOF or error, -1 if nothing now.
ssize_t read_some(int fd, char* tmp, size_t cap) {
    for (;;) {
        ssize_t k = ::read(fd, tmp, cap);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -1;
        if (k < 0) return 0;
        return k;
    }
}

void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) throw SysError("fcntl O_NONBLOCK", errno);
}

UniqueFd make_memfd(const char* name) {
    int fd = static_cast<int>(::syscall(SYS_memfd_create, name, 1u /* MFD_CLOEXEC */));
    if (fd < 0) throw SysError("memfd_create", errno);
    return UniqueFd(fd);
}

std::string pread_all(int fd, off_t off, size_t n) {
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

void pwrite_all(int fd, const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
        ssize_t k = ::pwrite(fd, data.data() + off, data.size() - off, static_cast<off_t>(off));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) throw SysError("writing test input to its memfd", k < 0 ? errno : EIO);
        off += static_cast<size_t>(k);
    }
}

// Empty and rewind a file (the three files of a set share their offsets with the child that holds them).
void reset_file(int fd) {
    if (ftruncate(fd, 0) != 0) throw SysError("ftruncate of a test I/O memfd", errno);
    if (lseek(fd, 0, SEEK_SET) < 0) throw SysError("lseek of a test I/O memfd", errno);
}

// A set's stdin file holds exactly `input`, rewound. Truncation (a metadata update, the costly part) only
// when the file is longer than the new input.
void load_input(int fd, const std::string& input) {
    struct stat st;
    if (fstat(fd, &st) != 0) throw SysError("fstat of a test I/O memfd", errno);
    if (static_cast<uint64_t>(st.st_size) > input.size() && ftruncate(fd, static_cast<off_t>(input.size())) != 0)
        throw SysError("ftruncate of a test I/O memfd", errno);
    pwrite_all(fd, input);
    if (lseek(fd, 0, SEEK_SET) < 0) throw SysError("lseek of a test I/O memfd", errno);
}

}  // namespace

// One zygote process and the generation it runs. Not thread-safe: one Python thread drives one Zygote.
//
// Generations are numbered (seq); every frame carries its generation's number, and frames of an earlier
// generation (a detached generation's STARTED and EXIT, a stray KILL) are dropped, so nothing of one
// generation can be taken for another's. A child frame with a wrong number or a corrupt header ends the
// generation ("bad").
//
// Test I/O goes through S "sets" of three memfds (stdin, stdout, stderr) created fresh for each
// generation and closed when it ends (no content, times or xattrs survive it): test j uses set j % S,
// and a child receives a set's descriptors with the first TEST frame that uses it. Before sending a test
// the supervisor writes its input into the set's stdin file and empties the outputs; after reading test
// j's outputs it empties and rewinds them (the stdin file is overwritten by the next test that uses the
// set). With at most S tests handed ahead, test j + S is sent only after test j's output was read, so
// outputs never mix; a set's outputs are therefore empty whenever a test is sent on it. The output cap is enforced twice: RLIMIT_FSIZE
// in the child (SIGXFSZ) and the size check here.
class Zygote {
public:
    Zygote(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
        if (argv.empty()) throw std::invalid_argument("Zygote needs a command line");
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
            throw SysError("socketpair", errno);
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
        UniqueFd mine(sv[0]);
        if (rc != 0) throw SysError(std::string("posix_spawn ") + argv[0], rc);
        zpid_ = pid;
        zsock_ = std::move(mine);
        set_nonblock(zsock_.get());
    }


    ~Zygote() { close_all(1.0); }

    int pid() const { return zpid_; }

    // Wait for one frame from the zygote outside a generation (READY, BENCH_RESULT). Returns (type,
    // payload) or None on timeout; raises if the zygote died.
    py::object recv_zygote(double timeout_s) {
        bool dead;
        {
            py::gil_scoped_release nogil;
            double deadline = now_s() + timeout_s;
            for (;;) {
                zout_.flush(zsock_.get());
                dead = !pump_zygote();
                if (!idle_.empty() || dead) break;
                double rem = deadline - now_s();
                if (rem <= 0) break;
                struct pollfd pf = {zsock_.get(), static_cast<short>(POLLIN | (zout_.empty() ? 0 : POLLOUT)), 0};
                ::poll(&pf, 1, static_cast<int>(rem * 1000) + 1);
            }
        }
        if (!idle_.empty()) {
            Frame f = std::move(idle_.front());
            idle_.pop_front();
            return py::make_tuple(f.type, py::bytes(f.payload));
        }
        if (dead) throw SysError("the executor zygote exited (control socket closed)", EPIPE);
        return py::none();
    }

    // Start a generation: a new sequence number, fresh I/O sets (`sets` of them: >= the tests handed
    // ahead) and a fresh control socketpair whose other end goes to the zygote with the RUN frame.
    // Returns the generation's sequence number.
    uint32_t start(const std::string& fn_name, int64_t as_bytes, int64_t cpu_s, int64_t fsize, int64_t nproc,
                   int64_t nofile, int64_t stack, const std::string& source, int sets) {
        py::gil_scoped_release nogil;
        end_generation();
        pump_zygote();
        ++seq_;
        if (seq_ == 0) seq_ = 1;
        started_ns_ = -1;
        have_exit_ = false;
        exit_payload_.clear();
        zerr_.clear();
        have_zerr_ = false;
        if (sets < 1) sets = 1;
        for (int i = 0; i < sets; ++i) {
            Set st;
            st.in = make_memfd("stdin");
            st.out = make_memfd("stdout");
            st.err = make_memfd("stderr");
            sets_.push_back(std::move(st));
        }
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw SysError("socketpair", errno);
        ctl_.reset(sv[0]);
        UniqueFd theirs(sv[1]);
        set_nonblock(ctl_.get());
        ctl_eof_ = false;
        cbuf_.clear();
        cout_.clear();
        FieldWriter w;
        w.bytes(fn_name).i64(as_bytes).i64(cpu_s).i64(fsize).i64(nproc).i64(nofile).i64(stack).bytes(source);
        std::vector<UniqueFd> fds;
        fds.push_back(std::move(theirs));
        zout_.push(kRun, seq_, w.str(), std::move(fds));
        zout_.flush(zsock_.get());
        return seq_;
    }

    // Queue test `index` (the generation's last if `last`): its input goes into the set's stdin file now,
    // the TEST frame (with the set's descriptors the first time) is written without blocking.
    bool send_test(int index, bool last, const std::string& input) {
        py::gil_scoped_release nogil;
        return send_test_nogil(index, last, input);
    }

    bool send_test_nogil(int index, bool last, const std::string& input) {
        if (!ctl_ || ctl_eof_ || sets_.empty() || index < 0) return false;
        size_t s = static_cast<size_t>(index) % sets_.size();
        Set& st = sets_[s];
        load_input(st.in.get(), input);
        // the set's own descriptors, not copies: they stay open until end_generation, which empties the
        // queue first
        std::vector<int> fds;
        if (!st.handed) {
            fds = {st.in.get(), st.out.get(), st.err.get()};
            st.handed = true;
        }
        FieldWriter w;
        w.u32(static_cast<uint32_t>(index)).u32(last ? 1 : 0).u32(static_cast<uint32_t>(s));
        cout_.push(kTest, seq_, w.str(), {}, std::move(fds));
        return cout_.flush(ctl_.get());
    }

    bool send_end() {
        py::gil_scoped_release nogil;
        if (!ctl_ || ctl_eof_) return false;
        cout_.push(kEnd, seq_, std::string());
        return cout_.flush(ctl_.get());
    }

    bool send_bench(int64_t n) {
        py::gil_scoped_release nogil;
        FieldWriter w;
        w.i64(n);
        zout_.push(kBench, 0, w.str());
        return zout_.flush(zsock_.get());
    }

    // Kill the running generation (the zygote ignores it if that generation already ended).
    bool kill_generation() {
        py::gil_scoped_release nogil;
        zout_.push(kKill, seq_, std::string());
        return zout_.flush(zsock_.get());
    }

    // Wait for the next event of the running generation, at most timeout_s seconds:
    //   ("ctl", type, payload)       a well-formed frame of this generation from the child
    //   ("bad", 0, why)              a child frame with a corrupt header or another generation's number
    //   ("ole", 0, b"")              a child frame longer than max_frame
    //   ("exit", 0, payload)         the zygote reaped this generation (EXIT payload); sent only once the
    //                                child's frames are all read
    //   ("zygote", type, payload)    a ZYGOTE_ERROR about this generation
    //   ("timeout", 0, b"")
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

    // CLOCK_MONOTONIC ns at which the zygote forked this generation (it had finished cleaning up the
    // previous one), or -1 if it has not said so yet. Reads what the zygote sent, without blocking.
    int64_t started_ns() {
        py::gil_scoped_release nogil;
        pump_zygote();
        return started_ns_;
    }

    // Read back test `index`'s stdout (None if it passed out_cap bytes) and the last tail_cap bytes of its
    // stderr, then empty and rewind both; then, if send_index >= 0, queue that test as send_test() does
    // (its set may be the one just freed: one call, one release of the GIL, per test). Returns
    // (stdout | None, stdout_size, stderr_tail, sent).
    py::tuple take_output(int index, uint64_t out_cap, uint64_t tail_cap, int send_index, bool send_last,
                          const std::string& send_input) {
        std::string out, tail;
        long long size = -1;
        bool over = false, sent = false;
        {
            py::gil_scoped_release nogil;
            if (!sets_.empty() && index >= 0) {
                const Set& o = sets_[static_cast<size_t>(index) % sets_.size()];
                struct stat st;
                if (fstat(o.out.get(), &st) != 0) throw SysError("fstat of a test I/O memfd", errno);
                size = st.st_size;
                if (size > static_cast<long long>(out_cap)) {
                    over = true;
                } else if (size > 0) {
                    out = pread_all(o.out.get(), 0, static_cast<size_t>(size));
                }
                if (fstat(o.err.get(), &st) != 0) throw SysError("fstat of a test I/O memfd", errno);
                long long esize = st.st_size;
                if (esize > 0) {
                    uint64_t esz = static_cast<uint64_t>(esize);
                    uint64_t off = esz > tail_cap ? esz - tail_cap : 0;
                    tail = pread_all(o.err.get(), static_cast<off_t>(off), static_cast<size_t>(esz - off));
                }
                // an untouched file is left alone (its offset was not moved by a write either)
                if (size != 0) reset_file(o.out.get());
                if (esize != 0) reset_file(o.err.get());
            }
            if (send_index >= 0) sent = send_test_nogil(send_index, send_last, send_input);
        }
        py::object o = over ? py::object(py::none()) : py::object(py::bytes(out));
        return py::make_tuple(o, size, py::bytes(tail), sent);
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
        zsock_.reset();
        zout_.clear();
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

    // Stop following the running generation: close its control socket and I/O sets. Whatever it still
    // sends is dropped by its sequence number; the zygote reaps and cleans it before the next one.
    void end_generation() {
        ctl_.reset();
        ctl_eof_ = true;
        cbuf_.clear();
        cout_.clear();
        sets_.clear();
    }

private:
    struct Set {
        UniqueFd in, out, err;
        bool handed = false;  // the running child holds this set's descriptors
    };

    // Reads what the zygote sent (non-blocking) and files it: frames of earlier generations are dropped,
    // this generation's STARTED / EXIT / ZYGOTE_ERROR kept for wait_event, others (READY, BENCH_RESULT)
    // queued for recv_zygote. Returns false once the zygote is gone.
    bool pump_zygote() {
        if (!zsock_) return false;
        char tmp[1 << 14];
        for (;;) {
            ssize_t k = read_some(zsock_.get(), tmp, sizeof(tmp));
            if (k == 0) {
                zdead_ = true;
                break;
            }
            if (k < 0) break;
            zbuf_.append(tmp, static_cast<size_t>(k));
            if (static_cast<size_t>(k) < sizeof(tmp)) break;  // drained (a stream socket): no read for EAGAIN
        }
        Frame f;
        for (;;) {
            int r = pop_frame(zbuf_, f, 1u << 30);
            if (r < 0) {
                zdead_ = true;  // the zygote is trusted: a corrupt stream means it is broken
                break;
            }
            if (r == 0) break;
            if (f.type == kStarted || f.type == kExit) {
                if (f.seq != seq_) continue;  // an earlier generation's report
                if (f.type == kStarted) {
                    FieldReader rd(f.payload);
                    int64_t ns = rd.i64();
                    if (rd.done()) started_ns_ = ns;
                } else {
                    have_exit_ = true;
                    exit_payload_ = std::move(f.payload);
                }
            } else if (f.type == kZygoteError) {
                if (f.seq != 0 && f.seq != seq_) continue;
                have_zerr_ = true;
                zerr_ = std::move(f.payload);
            } else {
                idle_.push_back(std::move(f));
            }
        }
        return !zdead_;
    }

    std::string wait_nogil(double timeout_s, uint64_t max_frame, uint32_t& type, std::string& payload) {
        double deadline = now_s() + timeout_s;
        static thread_local char tmp[1 << 16];
        bool zpoll = false;  // poll reported the zygote's socket (data, hang-up or error)
        for (;;) {
            if (ctl_ && !cout_.empty() && !cout_.flush(ctl_.get())) cout_.clear();
            if (!zout_.empty()) zout_.flush(zsock_.get());
            // while the child can talk, what the zygote sends (STARTED, EXIT) is not needed here and is
            // read when poll reports the socket or the child's channel closes
            if (zpoll || !ctl_ || ctl_eof_) pump_zygote();
            zpoll = false;
            if (ctl_ && cbuf_.size() >= sizeof(FrameHeader)) {
                FrameHeader h;
                std::memcpy(&h, cbuf_.data(), sizeof(h));
                if (h.magic != kFrameMagic || h.seq != seq_) {
                    end_child_channel();
                    payload = h.magic != kFrameMagic ? "a frame with a corrupt header" : "a frame of another generation";
                    return "bad";
                }
                if (h.length > max_frame) {
                    end_child_channel();
                    return "ole";
                }
                Frame f;
                if (pop_frame(cbuf_, f, max_frame) == 1) {
                    type = f.type;
                    payload = std::move(f.payload);
                    return "ctl";
                }
            }
            if (have_zerr_) {
                have_zerr_ = false;
                type = kZygoteError;
                payload = zerr_;
                return "zygote";
            }
            if ((!ctl_ || ctl_eof_) && have_exit_) {
                have_exit_ = false;
                payload = exit_payload_;
                end_child_channel();
                return "exit";
            }
            if (zdead_) return "zygote_dead";
            double rem = deadline - now_s();
            if (rem <= 0) return "timeout";
            struct pollfd pf[2];
            int n = 0;
            bool child_open = ctl_ && !ctl_eof_;
            // while the child can still talk, the zygote's socket only wakes us if it hangs up (its
            // STARTED / EXIT reports are read when needed); once the child is gone, wait for EXIT
            short zev = static_cast<short>((child_open ? 0 : POLLIN) | (zout_.empty() ? 0 : POLLOUT));
            pf[n++] = {zsock_.get(), zev, 0};
            int ictl = -1;
            if (child_open) {
                ictl = n;
                pf[n++] = {ctl_.get(), static_cast<short>(POLLIN | (cout_.empty() ? 0 : POLLOUT)), 0};
            }
            int ms = static_cast<int>(rem * 1000.0) + 1;
            int pr = ::poll(pf, static_cast<nfds_t>(n), ms);
            if (pr < 0) {
                if (errno == EINTR) continue;
                throw SysError("poll", errno);
            }
            if (pr == 0) continue;
            if (ictl >= 0 && (pf[ictl].revents & (POLLIN | POLLHUP | POLLERR))) {
                for (;;) {
                    ssize_t k = read_some(ctl_.get(), tmp, sizeof(tmp));
                    if (k > 0) {
                        cbuf_.append(tmp, static_cast<size_t>(k));
                        if (cbuf_.size() > max_frame + 2 * sizeof(FrameHeader)) break;
                        if (static_cast<size_t>(k) < sizeof(tmp)) break;  // drained for now
                        continue;
                    }
                    if (k == 0) ctl_eof_ = true;
                    break;
                }
            }
            if (pf[0].revents) zpoll = true;
        }
    }

    // The child's channel is finished (it sent something malformed, or it is gone): stop reading it.
    void end_child_channel() {
        ctl_.reset();
        ctl_eof_ = true;
        cbuf_.clear();
        cout_.clear();
    }

    pid_t zpid_ = -1;
    UniqueFd zsock_;
    std::string zbuf_;
    OutQueue zout_;
    bool zdead_ = false;
    std::deque<Frame> idle_;  // zygote frames outside a generation (READY, BENCH_RESULT)
    uint32_t seq_ = 0;
    int64_t started_ns_ = -1;
    bool have_exit_ = false;
    std::string exit_payload_;
    bool have_zerr_ = false;
    std::string zerr_;
    UniqueFd ctl_;
    bool ctl_eof_ = true;
    std::string cbuf_;
    OutQueue cout_;
    std::vector<Set> sets_;  // this generation's I/O sets
};

void init_supervisor(py::module_& m) {
    py::class_<Zygote>(m, "Zygote",
                       "One zygote process (started with posix_spawn) and the generation it runs. Driven "
                       "by microcoder_fast.executor.worker.Worker; not for direct use.")
        .def(py::init<const std::vector<std::string>&, const std::vector<std::string>&>(), py::arg("argv"),
             py::arg("env"))
        .def_property_readonly("pid", &Zygote::pid)
        .def("recv_zygote", &Zygote::recv_zygote, py::arg("timeout_s"))
        .def("start",
             [](Zygote& z, py::bytes fn_name, int64_t as_bytes, int64_t cpu_s, int64_t fsize, int64_t nproc,
                int64_t nofile, int64_t stack, py::bytes source, int sets) {
                 return z.start(std::string(fn_name), as_bytes, cpu_s, fsize, nproc, nofile, stack,
                                std::string(source), sets);
             },
             py::arg("fn_name"), py::arg("as_bytes"), py::arg("cpu_s"), py::arg("fsize"), py::arg("nproc"),
             py::arg("nofile"), py::arg("stack"), py::arg("source"), py::arg("sets"))
        .def("send_test",
             [](Zygote& z, int index, bool last, py::bytes input) { return z.send_test(index, last, std::string(input)); },
             py::arg("index"), py::arg("last"), py::arg("input"))
        .def("send_end", &Zygote::send_end)
        .def("send_bench", &Zygote::send_bench, py::arg("n"))
        .def("kill_generation", &Zygote::kill_generation)
        .def("wait_event", &Zygote::wait_event, py::arg("timeout_s"), py::arg("max_frame"))
        .def("started_ns", &Zygote::started_ns)
        .def("take_output",
             [](Zygote& z, int index, uint64_t out_cap, uint64_t tail_cap, int send_index, bool send_last,
                py::bytes send_input) {
                 return z.take_output(index, out_cap, tail_cap, send_index, send_last, std::string(send_input));
             },
             py::arg("index"), py::arg("out_cap"), py::arg("tail_cap"), py::arg("send_index") = -1,
             py::arg("send_last") = false, py::arg("send_input") = py::bytes())
        // closing a generation's memfds frees their pages (on return from close): not under the GIL
        .def("end_generation", &Zygote::end_generation, py::call_guard<py::gil_scoped_release>())
        .def("zygote_alive", &Zygote::zygote_alive)
        .def("close", &Zygote::close_all, py::arg("grace_s") = 1.0);
}

}  // namespace mcf
