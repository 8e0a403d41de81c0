// The one wire protocol of the executor: frames, their types, the payload field codec, and blocking and
// non-blocking frame I/O with descriptors (SCM_RIGHTS). Used by the supervisor (caller side), the
// zygote's serve loop and the generation child's helpers; nothing else speaks to those sockets.
//
// A frame is a 16-byte header {magic, type, seq, length} and `length` payload bytes. `seq` is the
// generation's sequence number (0 outside a generation): the supervisor drops every zygote frame of an
// earlier generation and treats a child frame with a wrong seq as malformed. Payloads are built from
// fixed-width little-endian integers and doubles and length-prefixed byte strings (u32 length + bytes):
// no field is ever found by scanning for a separator, so no program-controlled text can shift a field.
//
// Payloads by type (fields in order; "bytes" = u32 length + that many bytes):
//   supervisor -> zygote
//     RUN      bytes fn_name (empty = stdin mode), i64 as_bytes, i64 cpu_s, i64 fsize, i64 nproc,
//              i64 nofile, i64 stack, bytes source; one descriptor: the generation's control socket
//     KILL     empty; kills the running generation if its seq matches, else ignored
//     BENCH    i64 forks; answered with BENCH_RESULT i64 ns per fork+exit+wait
//   zygote -> supervisor
//     READY    JSON text: the isolation layers that are active (the zygote's own words)
//     STARTED  i64 fork_ns (CLOCK_MONOTONIC): the previous generation is cleaned up and this one forked
//     EXIT     i32 wait status, f64 utime, f64 stime, i64 maxrss_kb, i64 oom_kills (-1 unknown),
//              i64 memory_peak_bytes (-1 unknown), i64 reaped_ns (CLOCK_MONOTONIC when the child was
//              reaped); the generation is reaped, its strays killed, its
//              directories recreated
//     ZYGOTE_ERROR  text
//   supervisor -> child
//     TEST     u32 index, u32 last (0/1), u32 set; the set's three descriptors (stdin, stdout, stderr
//              memfds, input already written) ride along the first time the child uses that set
//     END      empty: no more tests, exit
//   child -> supervisor
//     BEGIN    u32 index, i64 begin_ns: the child compiled the program and starts its first test
//     RESULT   u32 index, i32 status, u32 flags (1 = dirty: the child exits after this report),
//              f64 cpu_s, f64 wall_s, i64 maxrss_kb, i64 end_ns, bytes exception type name (empty =
//              none), bytes message, bytes value (call mode: the encoded return value)
//     COMPILE_ERROR  bytes message
//     SETUP_ERROR    bytes message (the child could not enter the sandbox)
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "fd.h"

namespace mcf {

struct FrameHeader {
    uint32_t magic;   // kFrameMagic
    uint32_t type;    // FrameType
    uint32_t seq;     // generation sequence number (0 = none)
    uint32_t length;  // payload bytes that follow
};
static_assert(sizeof(FrameHeader) == 16, "frame header is 16 bytes");

constexpr uint32_t kFrameMagic = 0x3246434du;  // "MCF2" little-endian
constexpr uint32_t kMaxPayload = 0xffffffffu;

enum FrameType : uint32_t {
    kRun = 1,
    kKill = 2,
    kReady = 3,
    kExit = 4,
    kZygoteError = 5,
    kBench = 6,
    kBenchResult = 7,
    kStarted = 8,
    kTest = 10,
    kEnd = 11,
    kResult = 12,
    kBegin = 13,
    kCompileError = 14,
    kSetupError = 15,
};

struct Frame {
    uint32_t type = 0;
    uint32_t seq = 0;
    std::string payload;
};

// Builds a payload field by field.
class FieldWriter {
public:
    FieldWriter& u32(uint32_t v) { return raw(&v, sizeof(v)); }
    FieldWriter& i32(int32_t v) { return raw(&v, sizeof(v)); }
    FieldWriter& i64(int64_t v) { return raw(&v, sizeof(v)); }
    FieldWriter& f64(double v) { return raw(&v, sizeof(v)); }
    FieldWriter& bytes(const char* p, size_t n) {
        u32(static_cast<uint32_t>(n));
        buf_.append(p, n);
        return *this;
    }
    FieldWriter& bytes(const std::string& s) { return bytes(s.data(), s.size()); }
    std::string& str() { return buf_; }

private:
    FieldWriter& raw(const void* p, size_t n) {
        buf_.append(static_cast<const char*>(p), n);
        return *this;
    }
    std::string buf_;
};

// Reads a payload field by field. Any read past the end sets !ok() (and returns zeros); a payload is
// well formed only if ok() and done() after its last field.
class FieldReader {
public:
    FieldReader(const char* p, size_t n) : p_(p), n_(n) {}
    explicit FieldReader(const std::string& s) : FieldReader(s.data(), s.size()) {}
    uint32_t u32() { return fixed<uint32_t>(); }
    int32_t i32() { return fixed<int32_t>(); }
    int64_t i64() { return fixed<int64_t>(); }
    double f64() { return fixed<double>(); }
    std::string bytes() {
        uint32_t n = u32();
        if (!ok_ || n > n_ - off_) {
            ok_ = false;
            return std::string();
        }
        std::string s(p_ + off_, n);
        off_ += n;
        return s;
    }
    // the next length-prefixed field without copying it (valid while the buffer lives)
    std::string_view view() {
        uint32_t n = u32();
        if (!ok_ || n > n_ - off_) {
            ok_ = false;
            return std::string_view();
        }
        std::string_view v(p_ + off_, n);
        off_ += n;
        return v;
    }
    bool ok() const { return ok_; }
    bool done() const { return ok_ && off_ == n_; }

private:
    template <typename T>
    T fixed() {
        T v{};
        if (!ok_ || n_ - off_ < sizeof(T)) {
            ok_ = false;
            return v;
        }
        std::memcpy(&v, p_ + off_, sizeof(T));
        off_ += sizeof(T);
        return v;
    }
    const char* p_;
    size_t n_;
    size_t off_ = 0;
    bool ok_ = true;
};

std::string encode_frame(uint32_t type, uint32_t seq, const std::string& payload);

// Blocking I/O (zygote and child: their sockets are blocking and their peer is the supervisor).
// send_frame_blocking: false on error (errno set). recv_frame_blocking: 1 = a frame (descriptors
// received with it appended to fds, close-on-exec), 0 = EOF, -1 = error or a corrupt header.
bool send_frame_blocking(int fd, uint32_t type, uint32_t seq, const std::string& payload,
                         const std::vector<int>& fds = {});
int recv_frame_blocking(int fd, Frame& out, std::vector<UniqueFd>& fds, uint64_t max_payload);

// Non-blocking parse for the supervisor: pops one complete frame from buf. Returns 1 = a frame,
// 0 = incomplete, -1 = corrupt header (wrong magic) or length over max_payload.
int pop_frame(std::string& buf, Frame& out, uint64_t max_payload);

// Frames queued for a non-blocking socket: flush() writes what the socket takes now (MSG_DONTWAIT) and
// keeps the rest; a frame's descriptors go with its first byte. The supervisor never blocks on a send.
class OutQueue {
public:
    // `fds` are closed once sent; `borrowed` descriptors are sent as they are and must stay open while the
    // frame is queued (clear() the queue before closing them)
    void push(uint32_t type, uint32_t seq, const std::string& payload, std::vector<UniqueFd> fds = {},
              std::vector<int> borrowed = {});
    // false on a socket error (peer gone); true otherwise (even if something is still queued).
    bool flush(int sock);
    bool empty() const { return q_.empty(); }
    void clear() { q_.clear(); }

private:
    struct Item {
        std::string bytes;
        std::vector<UniqueFd> fds;
        std::vector<int> borrowed;
        size_t off = 0;
    };
    std::deque<Item> q_;
};

void init_frame(pybind11::module_& m);

}  // namespace mcf
