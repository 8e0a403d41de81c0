// The sandboxed fork-server executor: shared declarations of the wire format and the module init hooks.
//
// Processes (see microcoder_fast/executor/__init__.py for the whole picture):
//   caller (supervisor, this extension)  --posix_spawn-->  zygote (clean Python, pre-imported, root)
//   zygote  --fork per generation-->  generation child (drops to an unprivileged uid, rlimits, seccomp)
// The supervisor talks to the zygote over one stream socket and to each generation child over a fresh
// socketpair plus a stdout pipe and a stderr pipe it created and handed over with SCM_RIGHTS.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

namespace mcf {

// Every message on every socket is a frame: 16-byte header + payload.
struct FrameHeader {
    uint32_t magic;  // kFrameMagic
    uint32_t type;   // FrameType
    uint64_t length; // payload bytes that follow
};
static_assert(sizeof(FrameHeader) == 16, "frame header is 16 bytes");

constexpr uint32_t kFrameMagic = 0x4d434631u;  // "MCF1"

enum FrameType : uint32_t {
    // supervisor -> zygote
    kRun = 1,       // payload: JSON config line, '\n', program source; fds: ctl, stdout_w, stderr_w
    kKill = 2,      // kill the running generation (and everything it started)
    // zygote -> supervisor
    kReady = 3,     // payload: JSON describing the isolation layers that are active
    kExit = 4,      // payload: JSON {status, utime, stime, maxrss_kb}; the generation is reaped and cleaned
    kZygoteError = 5,
    kBench = 6,        // payload: decimal count; answer kBenchResult with ns per fork+exit+wait
    kBenchResult = 7,
    // supervisor -> child
    kTest = 10,     // payload: JSON {index}; fd: stdin memfd
    kEnd = 11,      // no more tests: exit cleanly
    // child -> supervisor
    kResult = 12,   // payload: JSON header line, '\n', value text (call mode)
    kCompiled = 13, // the program compiled; tests may be sent
    kCompileError = 14,
    kSetupError = 15,  // the child could not enter the sandbox (payload: the step that failed)
};

// What a generation child needs to sandbox itself (filled by the zygote before fork).
struct ChildConfig {
    int ctl_fd = -1;
    int expected_parent = 0;
    const char* workdir = nullptr;
    int uid = -1;
    int gid = -1;
    long long as_bytes = 0;  // RLIMIT_AS
    long long cpu_s = 0;     // RLIMIT_CPU soft (hard = soft + 1)
    long long fsize = 0;     // RLIMIT_FSIZE
    long long nproc = 0;     // RLIMIT_NPROC (per uid: processes + threads)
    long long nofile = 0;    // RLIMIT_NOFILE
    long long stack = 0;     // RLIMIT_STACK
    bool seccomp = false;
};

int enter_child_core(const ChildConfig& c, const char** what);
void init_sandbox(pybind11::module_& m);
void init_zygote_loop(pybind11::module_& m);
void init_supervisor(pybind11::module_& m);

}  // namespace mcf
