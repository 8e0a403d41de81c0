// Sandbox primitives used inside the zygote (namespaces, mounts) and inside each generation child right
// after the fork (descriptor layout, rlimits, privilege drop, no_new_privs, seccomp). These are the OS
// layers of isolation; microcoder_fast/executor/_zygote.py decides which ones to use and records which
// ones are active.
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if __has_include(<linux/audit.h>)
#include <linux/audit.h>
#endif

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "executor.h"
#include "fd.h"

namespace py = pybind11;

namespace mcf {
namespace {

[[noreturn]] void raise_errno(const std::string& what) { throw SysError(what, errno); }

void close_from(int lowfd) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, static_cast<unsigned>(lowfd), ~0u, 0u) == 0) return;
#endif
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536) maxfd = 65536;
    for (int fd = lowfd; fd < maxfd; ++fd) close(fd);
}

#if defined(__x86_64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#else
constexpr uint32_t kAuditArch = 0;
#endif

// Syscalls a judged program never needs and that widen the attack surface or reach outside the sandbox.
std::vector<long> denied_syscalls() {
    std::vector<long> v = {
        SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev, SYS_kcmp, SYS_mount, SYS_umount2,
        SYS_pivot_root, SYS_chroot, SYS_unshare, SYS_setns, SYS_keyctl, SYS_add_key, SYS_request_key,
        SYS_bpf, SYS_perf_event_open, SYS_userfaultfd, SYS_kexec_load, SYS_init_module,
        SYS_finit_module, SYS_delete_module, SYS_reboot, SYS_swapon, SYS_swapoff, SYS_acct,
        SYS_quotactl, SYS_open_by_handle_at, SYS_name_to_handle_at, SYS_syslog, SYS_fanotify_init,
        SYS_settimeofday, SYS_clock_settime, SYS_adjtimex, SYS_sethostname, SYS_setdomainname,
        SYS_personality,
#ifdef SYS_kexec_file_load
        SYS_kexec_file_load,
#endif
#ifdef SYS_io_uring_setup
        SYS_io_uring_setup, SYS_io_uring_enter, SYS_io_uring_register,
#endif
#ifdef SYS_open_tree
        SYS_open_tree, SYS_move_mount, SYS_fsopen, SYS_fsconfig, SYS_fsmount, SYS_fspick,
#endif
#ifdef SYS_mount_setattr
        SYS_mount_setattr,
#endif
#ifdef SYS_pidfd_getfd
        SYS_pidfd_getfd,
#endif
#ifdef SYS_iopl
        SYS_iopl, SYS_ioperm,
#endif
        // SysV IPC and POSIX message queues: the only state an IPC namespace holds. Refused, generations
        // share their zygote's (empty) IPC namespace instead of creating one each.
#ifdef SYS_shmget
        SYS_shmget, SYS_shmat, SYS_shmdt, SYS_shmctl,
#endif
#ifdef SYS_msgget
        SYS_msgget, SYS_msgsnd, SYS_msgrcv, SYS_msgctl,
#endif
#ifdef SYS_semget
        SYS_semget, SYS_semop, SYS_semctl,
#endif
#ifdef SYS_semtimedop
        SYS_semtimedop,
#endif
#ifdef SYS_ipc
        SYS_ipc,
#endif
#ifdef SYS_mq_open
        SYS_mq_open, SYS_mq_unlink, SYS_mq_timedsend, SYS_mq_timedreceive, SYS_mq_notify, SYS_mq_getsetattr,
#endif
    };
    return v;
}

constexpr unsigned long kCloneNsMask = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
                                       CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP;

bool load_filter(std::vector<sock_filter>& f);

// Syscalls only the zygote itself uses (the writable mounts are swapped per generation): left out of the
// zygote's filter, refused in a generation child by a filter of its own where its privileges do not.
const std::vector<long> kZygoteOnly = {SYS_mount, SYS_umount2};

// Builds and installs a filter refusing `deny` (EPERM) and, with `process_rules`, also x32 numbers,
// clone3 (ENOSYS), sockets other than AF_UNIX and clone() with namespace flags. Returns false (errno
// set) if the kernel refused it. Installing costs ~2 us per instruction (the kernel checks, converts and
// JIT-compiles it), so the zygote installs the long filter once and each generation child adds a short
// one (see install_zygote_seccomp).
bool install_seccomp_filter(const std::vector<long>& deny, bool process_rules) {
    if (kAuditArch == 0) {
        errno = ENOSYS;
        return false;
    }
    std::vector<sock_filter> f;
    auto stmt = [&](uint16_t code, uint32_t k) { f.push_back(BPF_STMT(code, k)); };
    auto jump = [&](uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { f.push_back(BPF_JUMP(code, k, jt, jf)); };
    const uint32_t kErrno = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
    stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    jump(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0);
    stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#if defined(__x86_64__)
    // x32 ABI numbers alias the 64-bit ones with bit 30 set: refuse them wholesale.
    jump(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1);
    stmt(BPF_RET | BPF_K, kErrno);
#endif
    for (long nr : deny) {
        jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1);
        stmt(BPF_RET | BPF_K, kErrno);
    }
    if (!process_rules) {
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        return load_filter(f);
    }
#ifdef SYS_clone3
    // clone3 passes its flags in memory the filter cannot read: answer ENOSYS so libc falls back to clone.
    jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1);
    stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS);
#endif
    // socket(): only AF_UNIX (multiprocessing and friends); no IP, netlink or packet sockets.
    jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 4);
    stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
    jump(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 1, 0);
    stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAFNOSUPPORT);
    stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    // clone(): no new namespaces.
    jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 4);
    stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
    jump(BPF_JMP | BPF_JSET | BPF_K, static_cast<uint32_t>(kCloneNsMask), 0, 1);
    stmt(BPF_RET | BPF_K, kErrno);
    stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    return load_filter(f);
}

bool load_filter(std::vector<sock_filter>& f) {
    struct sock_fprog prog;
    prog.len = static_cast<unsigned short>(f.size());
    prog.filter = f.data();
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
#ifdef SYS_seccomp
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0) return true;
#endif
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0;
}


}  // namespace

// Called in the generation child right after fork (zygote side; born in the generation's cgroup, and
// in a fresh IPC namespace where seccomp is unavailable). Lays out the descriptors
// (0/1/2 = /dev/null until the first test, 3 = control socket), closes everything else, starts a new
// session, asks to die with the zygote, becomes a subreaper for its own descendants, enters the work
// directory, applies rlimits, drops to uid/gid (if uid >= 0), sets no_new_privs and non-dumpable, and
// adds its own mount/umount2 filter if it keeps the caller's uid (the zygote's filter is inherited). Returns 0, or -1
// with `what` naming the step that failed.
int enter_child_core(const ChildConfig& c, const char** what) {
    auto fail = [&](const char* w) {
        *what = w;
        return -1;
    };
    int hi_ctl = fcntl(c.ctl_fd, F_DUPFD_CLOEXEC, 100);
    if (hi_ctl < 0) return fail("dup of the control socket");
    int devnull = open("/dev/null", O_RDWR);
    if (devnull < 0) return fail("open /dev/null");
    if (dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0 || dup2(hi_ctl, 3) < 0)
        return fail("dup2 of generation descriptors");
    close_from(4);
    if (fcntl(3, F_SETFD, FD_CLOEXEC) != 0) return fail("FD_CLOEXEC on the control socket");

    if (setsid() < 0) return fail("setsid");
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return fail("PR_SET_PDEATHSIG");
    if (c.expected_parent > 0 && getppid() != c.expected_parent) _exit(111);  // zygote already gone
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) return fail("PR_SET_CHILD_SUBREAPER");
    if (c.workdir && c.workdir[0] && chdir(c.workdir) != 0) return fail("chdir to the work directory");
    umask(077);

    struct rlimit r0 = {0, 0};
    if (setrlimit(RLIMIT_CORE, &r0) != 0) return fail("RLIMIT_CORE");
    if (setrlimit(RLIMIT_MSGQUEUE, &r0) != 0) return fail("RLIMIT_MSGQUEUE");
    auto lim = [&](int res, long long soft, long long hard) {
        struct rlimit r = {static_cast<rlim_t>(soft), static_cast<rlim_t>(hard)};
        return setrlimit(res, &r) == 0;
    };
    if (c.as_bytes > 0 && !lim(RLIMIT_AS, c.as_bytes, c.as_bytes)) return fail("RLIMIT_AS");
    if (c.cpu_s > 0 && !lim(RLIMIT_CPU, c.cpu_s, c.cpu_s + 1)) return fail("RLIMIT_CPU");
    if (c.fsize > 0 && !lim(RLIMIT_FSIZE, c.fsize, c.fsize)) return fail("RLIMIT_FSIZE");
    if (c.nofile > 0 && !lim(RLIMIT_NOFILE, c.nofile, c.nofile)) return fail("RLIMIT_NOFILE");
    if (c.stack > 0 && !lim(RLIMIT_STACK, c.stack, c.stack)) return fail("RLIMIT_STACK");
    if (c.uid >= 0) {
        // RLIMIT_NPROC counts every process and thread of the uid; the uid is private to this worker.
        if (c.nproc > 0 && !lim(RLIMIT_NPROC, c.nproc, c.nproc)) return fail("RLIMIT_NPROC");
        if (setgroups(0, nullptr) != 0) return fail("setgroups");
        if (setresgid(c.gid, c.gid, c.gid) != 0) return fail("setresgid");
        if (setresuid(c.uid, c.uid, c.uid) != 0) return fail("setresuid");
        if (getuid() != static_cast<uid_t>(c.uid) || geteuid() != static_cast<uid_t>(c.uid))
            return fail("privilege drop did not take");
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail("PR_SET_NO_NEW_PRIVS");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return fail("PR_SET_DUMPABLE");
    // the zygote's filter (inherited) refuses everything else; mount and umount2 need CAP_SYS_ADMIN, which
    // a child that dropped to its unprivileged uid does not have, so only a child that keeps the caller's
    // uid adds a filter of its own for them (installing one costs ~2 us per instruction)
    if (c.seccomp && c.uid < 0 && !install_seccomp_filter(kZygoteOnly, false)) return fail("seccomp filter");
    return 0;
}

// In the zygote before it serves: every refusal of the generation filter but the zygote's own mount
// calls, inherited by each generation child (which adds the rest with a short filter of its own).
bool install_zygote_seccomp() {
    std::vector<long> deny;
    for (long nr : denied_syscalls())
        if (std::find(kZygoteOnly.begin(), kZygoteOnly.end(), nr) == kZygoteOnly.end()) deny.push_back(nr);
    return install_seccomp_filter(deny, true);
}

void init_sandbox(py::module_& m) {
    py::module_ sb = m.def_submodule("sandbox", "Sandbox primitives for the executor's zygote and children");
    sb.attr("CLONE_NEWNS") = static_cast<long>(CLONE_NEWNS);
    sb.attr("CLONE_NEWPID") = static_cast<long>(CLONE_NEWPID);
    sb.attr("CLONE_NEWNET") = static_cast<long>(CLONE_NEWNET);
    sb.attr("CLONE_NEWIPC") = static_cast<long>(CLONE_NEWIPC);
    sb.attr("CLONE_NEWUTS") = static_cast<long>(CLONE_NEWUTS);
    sb.attr("CLONE_NEWUSER") = static_cast<long>(CLONE_NEWUSER);
    sb.attr("MS_RDONLY") = static_cast<long>(MS_RDONLY);
    sb.attr("MS_NOSUID") = static_cast<long>(MS_NOSUID);
    sb.attr("MS_NODEV") = static_cast<long>(MS_NODEV);
    sb.attr("MS_NOEXEC") = static_cast<long>(MS_NOEXEC);
    sb.attr("MS_BIND") = static_cast<long>(MS_BIND);
    sb.attr("MS_REC") = static_cast<long>(MS_REC);
    sb.attr("MS_PRIVATE") = static_cast<long>(MS_PRIVATE);
    sb.attr("MS_REMOUNT") = static_cast<long>(MS_REMOUNT);
    sb.attr("MNT_DETACH") = static_cast<long>(MNT_DETACH);

    sb.def("unshare", [](long flags) {
        if (::unshare(static_cast<int>(flags)) != 0) raise_errno("unshare");
    });
    sb.def("mount", [](const std::string& src, const std::string& target, const std::string& fstype, long flags,
                       const std::string& data) {
        if (::mount(src.empty() ? nullptr : src.c_str(), target.c_str(), fstype.empty() ? nullptr : fstype.c_str(),
                    static_cast<unsigned long>(flags), data.empty() ? nullptr : data.c_str()) != 0)
            raise_errno("mount " + target);
    });
    sb.def("umount2", [](const std::string& target, long flags) {
        if (::umount2(target.c_str(), static_cast<int>(flags)) != 0) raise_errno("umount2 " + target);
    });
    sb.def("pivot_root", [](const std::string& new_root, const std::string& put_old) {
        if (syscall(SYS_pivot_root, new_root.c_str(), put_old.c_str()) != 0) raise_errno("pivot_root");
    });
    sb.def("set_pdeathsig", [](int sig) {
        if (prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0) raise_errno("PR_SET_PDEATHSIG");
    });
    sb.def("set_child_subreaper", []() {
        if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) raise_errno("PR_SET_CHILD_SUBREAPER");
    });
    sb.def(
        "set_default_thread_stack",
        [](long long bytes) {
            // glibc sizes new threads' stacks from RLIMIT_STACK at start-up; the zygote raises that limit for
            // the main thread only, so threads get the usual 8 MB unless a program asks otherwise.
            pthread_attr_t a;
            pthread_attr_init(&a);
            int rc = pthread_attr_setstacksize(&a, static_cast<size_t>(bytes));
            if (rc == 0) rc = pthread_setattr_default_np(&a);
            pthread_attr_destroy(&a);
            if (rc != 0) throw SysError("pthread_setattr_default_np", rc);
        },
        py::arg("bytes"));
    sb.def("seccomp_supported", []() {
#if defined(__x86_64__) || defined(__aarch64__)
        return prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0;
#else
        return false;
#endif
    });
}

}  // namespace mcf
