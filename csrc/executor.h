// The sandboxed fork-server executor: what the generation child's sandbox entry needs, and the init
// hook of each part of the extension (module.cpp calls every one of them, in order).
//
// Processes (see microcoder_fast/executor/__init__.py for the whole picture):
//   caller (supervisor.cpp, in the caller's process)  --posix_spawn-->  zygote (clean Python, root)
//   zygote (zygote.cpp's serve loop)  --fork per generation-->  generation child (sandbox.cpp's
//   enter_child_core: unprivileged uid, rlimits, seccomp; then the Python harness with child.cpp)
// The supervisor talks to the zygote over one stream socket and to each generation child over a fresh
// control socketpair handed over in the RUN frame. Test I/O goes through memfds the supervisor creates
// per generation and hands to the child with SCM_RIGHTS. The wire format is in frame.h.
#pragma once

#include <pybind11/pybind11.h>

namespace mcf {

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

// In the generation child right after fork. Returns 0, or -1 with `what` naming the step that failed
// (errno set by that step).
int enter_child_core(const ChildConfig& c, const char** what);

// In the zygote, once, before it serves (if the children are to run under seccomp): the long part of the
// generation filter, which every child inherits. Returns false (errno set) if the kernel refused it.
bool install_zygote_seccomp();

void init_sandbox(pybind11::module_& m);     // _C.sandbox: namespaces, mounts, process primitives
void init_zygote(pybind11::module_& m);      // _C.sandbox.zygote_loop (needs _C.sandbox)
void init_child(pybind11::module_& m);       // _C.child: the harness' helpers (child.h)
void init_supervisor(pybind11::module_& m);  // _C.Zygote: one zygote process, driven by the supervisor

}  // namespace mcf
