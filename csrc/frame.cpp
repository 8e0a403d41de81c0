// The frame codec (see frame.h): encoding, blocking send/receive with SCM_RIGHTS, the supervisor's
// non-blocking parse and send queue, and the Python view of the frame types and payload decoders.
#include "frame.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cstring>

namespace py = pybind11;

namespace mcf {

std::string encode_frame(uint32_t type, uint32_t seq, const std::string& payload) {
    FrameHeader h{kFrameMagic, type, seq, static_cast<uint32_t>(payload.size())};
    std::string buf(reinterpret_cast<const char*>(&h), sizeof(h));
    buf += payload;
    return buf;
}

namespace {

// sendmsg of p[0..n) with fds attached (if any). Returns bytes sent or -1 (errno set).
ssize_t send_with_fds(int sock, const char* p, size_t n, const int* fds, size_t nfds, int flags) {
    struct iovec iov = {const_cast<char*>(p), n};
    struct msghdr msg;
    std::memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> cbuf;
    if (nfds > 0) {
        cbuf.assign(CMSG_SPACE(sizeof(int) * nfds), 0);
        msg.msg_control = cbuf.data();
        msg.msg_controllen = cbuf.size();
        struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t k;
    do {
        k = ::sendmsg(sock, &msg, MSG_NOSIGNAL | flags);
    } while (k < 0 && errno == EINTR);
    return k;
}

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

}  // namespace

bool send_frame_blocking(int fd, uint32_t type, uint32_t seq, const std::string& payload, const std::vector<int>& fds) {
    std::string buf = encode_frame(type, seq, payload);
    const char* p = buf.data();
    size_t n = buf.size();
    bool first = true;
    while (n > 0) {
        ssize_t k = send_with_fds(fd, p, n, first ? fds.data() : nullptr, first ? fds.size() : 0, 0);
        if (k <= 0) return false;
        first = false;
        p += k;
        n -= static_cast<size_t>(k);
    }
    return true;
}

int recv_frame_blocking(int fd, Frame& out, std::vector<UniqueFd>& fds, uint64_t max_payload) {
    FrameHeader h;
    size_t got = 0;
    char* hp = reinterpret_cast<char*>(&h);
    while (got < sizeof(h)) {
        struct iovec iov = {hp + got, sizeof(h) - got};
        alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 8)];
        struct msghdr msg;
        std::memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf;
        msg.msg_controllen = sizeof(cbuf);
        ssize_t k = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < n; ++i) {
                    int v;
                    std::memcpy(&v, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                    fds.emplace_back(v);
                }
            }
        }
        if (k == 0) return got == 0 ? 0 : -1;
        got += static_cast<size_t>(k);
    }
    if (h.magic != kFrameMagic || h.length > max_payload) return -1;
    out.type = h.type;
    out.seq = h.seq;
    out.payload.resize(h.length);
    if (h.length > 0 && !read_exact(fd, &out.payload[0], h.length)) return -1;
    return 1;
}

int pop_frame(std::string& buf, Frame& out, uint64_t max_payload) {
    if (buf.size() < sizeof(FrameHeader)) return 0;
    FrameHeader h;
    std::memcpy(&h, buf.data(), sizeof(h));
    if (h.magic != kFrameMagic || h.length > max_payload) return -1;
    if (buf.size() < sizeof(h) + h.length) return 0;
    out.type = h.type;
    out.seq = h.seq;
    out.payload.assign(buf, sizeof(h), h.length);
    buf.erase(0, sizeof(h) + h.length);
    return 1;
}

void OutQueue::push(uint32_t type, uint32_t seq, const std::string& payload, std::vector<UniqueFd> fds,
                    std::vector<int> borrowed) {
    Item it;
    it.bytes = encode_frame(type, seq, payload);
    it.fds = std::move(fds);
    it.borrowed = std::move(borrowed);
    q_.push_back(std::move(it));
}

bool OutQueue::flush(int sock) {
    while (!q_.empty()) {
        Item& it = q_.front();
        std::vector<int> raw;
        if (it.off == 0) {
            for (auto& f : it.fds) raw.push_back(f.get());
            raw.insert(raw.end(), it.borrowed.begin(), it.borrowed.end());
        }
        ssize_t k = send_with_fds(sock, it.bytes.data() + it.off, it.bytes.size() - it.off, raw.data(), raw.size(),
                                  MSG_DONTWAIT);
        if (k < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
        it.fds.clear();  // delivered with the first byte
        it.borrowed.clear();
        it.off += static_cast<size_t>(k);
        if (it.off < it.bytes.size()) return true;  // the socket is full: the rest waits for POLLOUT
        q_.pop_front();
    }
    return true;
}

namespace {

[[noreturn]] void malformed(const char* what) {
    throw py::value_error(std::string("malformed ") + what + " frame");
}

py::tuple decode_result(py::bytes payload) {
    // read the payload in place and copy each field once, into its Python bytes: a RESULT can carry a
    // return value as large as the output cap, and the caller's memory must stay bounded
    char* data = nullptr;
    Py_ssize_t size = 0;
    if (PyBytes_AsStringAndSize(payload.ptr(), &data, &size) != 0) throw py::error_already_set();
    FieldReader r(data, static_cast<size_t>(size));
    uint32_t index = r.u32();
    int32_t status = r.i32();
    uint32_t flags = r.u32();
    double cpu = r.f64();
    double wall = r.f64();
    int64_t rss = r.i64();
    int64_t end_ns = r.i64();
    std::string_view exc = r.view();
    std::string_view msg = r.view();
    std::string_view value = r.view();
    if (!r.done() || flags > 1) malformed("RESULT");
    return py::make_tuple(index, status, flags, cpu, wall, rss, end_ns, py::bytes(exc.data(), exc.size()),
                          py::bytes(msg.data(), msg.size()), py::bytes(value.data(), value.size()));
}

py::tuple decode_exit(py::bytes payload) {
    std::string s(payload);
    FieldReader r(s);
    int32_t status = r.i32();
    double ut = r.f64();
    double st = r.f64();
    int64_t rss = r.i64();
    int64_t oom = r.i64();
    int64_t peak = r.i64();
    int64_t reaped_ns = r.i64();
    if (!r.done()) malformed("EXIT");
    return py::make_tuple(status, ut, st, rss, oom, peak, reaped_ns);
}

py::tuple decode_begin(py::bytes payload) {
    std::string s(payload);
    FieldReader r(s);
    uint32_t index = r.u32();
    int64_t ns = r.i64();
    if (!r.done()) malformed("BEGIN");
    return py::make_tuple(index, ns);
}

py::bytes decode_text(py::bytes payload) {
    std::string s(payload);
    FieldReader r(s);
    std::string t = r.bytes();
    if (!r.done()) malformed("text");
    return py::bytes(t);
}

py::bytes encode_result(uint32_t index, int32_t status, uint32_t flags, double cpu, double wall, int64_t rss,
                        int64_t end_ns, py::bytes exc, py::bytes msg, py::bytes value) {
    FieldWriter w;
    w.u32(index).i32(status).u32(flags).f64(cpu).f64(wall).i64(rss).i64(end_ns);
    w.bytes(std::string(exc)).bytes(std::string(msg)).bytes(std::string(value));
    return py::bytes(w.str());
}

}  // namespace

void init_frame(py::module_& m) {
    py::module_ f = m.def_submodule("frame", "The executor's wire protocol: frame types and payload decoders "
                                                  "(see csrc/frame.h for every payload's fields)");
    f.attr("RUN") = static_cast<int>(kRun);
    f.attr("KILL") = static_cast<int>(kKill);
    f.attr("READY") = static_cast<int>(kReady);
    f.attr("EXIT") = static_cast<int>(kExit);
    f.attr("ZYGOTE_ERROR") = static_cast<int>(kZygoteError);
    f.attr("BENCH") = static_cast<int>(kBench);
    f.attr("BENCH_RESULT") = static_cast<int>(kBenchResult);
    f.attr("STARTED") = static_cast<int>(kStarted);
    f.attr("TEST") = static_cast<int>(kTest);
    f.attr("END") = static_cast<int>(kEnd);
    f.attr("RESULT") = static_cast<int>(kResult);
    f.attr("BEGIN") = static_cast<int>(kBegin);
    f.attr("COMPILE_ERROR") = static_cast<int>(kCompileError);
    f.attr("SETUP_ERROR") = static_cast<int>(kSetupError);
    f.attr("HEADER_BYTES") = static_cast<int>(sizeof(FrameHeader));
    f.attr("RESULT_DIRTY") = 1;
    f.def(
        "send",
        [](int fd, uint32_t type, uint32_t seq, py::bytes payload) {
            std::string s(payload);
            bool ok;
            {
                py::gil_scoped_release nogil;
                ok = send_frame_blocking(fd, type, seq, s);
            }
            if (!ok) throw SysError("sending a frame", errno);
        },
        py::arg("fd"), py::arg("type"), py::arg("seq"), py::arg("payload"),
        "Blocking: one frame on a socket (the zygote's READY report)");
    f.def("decode_result", &decode_result, py::arg("payload"),
          "RESULT payload -> (index, status, flags, cpu_s, wall_s, maxrss_kb, end_ns, exc, message, value); "
          "ValueError if malformed");
    f.def("decode_exit", &decode_exit, py::arg("payload"),
          "EXIT payload -> (status, utime, stime, maxrss_kb, oom_kills, memory_peak_bytes, reaped_ns)");
    f.def("decode_begin", &decode_begin, py::arg("payload"), "BEGIN payload -> (index, begin_ns)");
    f.def("decode_text", &decode_text, py::arg("payload"), "COMPILE_ERROR / SETUP_ERROR payload -> message");
    f.def("encode_result", &encode_result, py::arg("index"), py::arg("status"), py::arg("flags"), py::arg("cpu_s"),
          py::arg("wall_s"), py::arg("maxrss_kb"), py::arg("end_ns"), py::arg("exc"), py::arg("message"),
          py::arg("value"), "RESULT payload from its fields (the harness' report; also used by tests)");
}

}  // namespace mcf
