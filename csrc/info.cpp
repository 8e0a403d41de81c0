// Version and capability queries: what this build of the C++ core can do on this host.
#include "info.h"

#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <string>

#ifndef MICROCODER_VERSION
#define MICROCODER_VERSION "0.0.0+unknown"
#endif

#if defined(__linux__)
#include <linux/version.h>
#if __has_include(<linux/seccomp.h>)
#define MCF_HAVE_SECCOMP_HEADERS 1
#endif
#endif

namespace py = pybind11;

namespace mcf {

static std::string compiler_string() {
#if defined(__clang__)
    return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    return "gcc " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__) + "." +
           std::to_string(__GNUC_PATCHLEVEL__);
#else
    return "unknown";
#endif
}

static py::dict capabilities() {
    py::dict d;
    d["version"] = MICROCODER_VERSION;
    d["compiler"] = compiler_string();
    d["cplusplus"] = static_cast<long>(__cplusplus);
#if defined(__linux__)
    d["platform"] = "linux";
#else
    d["platform"] = "other";
#endif
#ifdef MCF_HAVE_SECCOMP_HEADERS
    d["seccomp_headers"] = true;
#else
    d["seccomp_headers"] = false;
#endif
    struct utsname u;
    if (uname(&u) == 0) {
        d["kernel"] = std::string(u.sysname) + " " + u.release;
        d["machine"] = std::string(u.machine);
    }
    d["cpu_count"] = static_cast<long>(sysconf(_SC_NPROCESSORS_ONLN));
    d["is_root"] = (geteuid() == 0);
    // What the executor's sandbox can use on this host (the zygotes report the layers actually active:
    // microcoder_fast.executor.Executor(...).layers).
    py::dict ex;
    ex["fork_server"] = true;
#if defined(__x86_64__) || defined(__aarch64__)
    ex["seccomp_filter"] = true;
#else
    ex["seccomp_filter"] = false;
#endif
#ifdef SYS_pidfd_open
    ex["pidfd"] = true;
#else
    ex["pidfd"] = false;
#endif
    ex["namespaces_and_uid_drop"] = (geteuid() == 0);
    d["executor"] = ex;
    return d;
}

void init_info(py::module_& m) {
    m.attr("__version__") = MICROCODER_VERSION;
    m.def("version", []() { return std::string(MICROCODER_VERSION); },
          "Version string of the compiled core.");
    m.def("capabilities", &capabilities,
          "Dict describing this build and host: compiler, C++ standard, platform, kernel, seccomp headers, "
          "CPU count, whether running as root.");
}

}  // namespace mcf
