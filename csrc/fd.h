// Owning file descriptor (RAII) and the one error type of the C++ core: what failed plus errno.
// Header-only; used by every part of the executor. Python sees SysError as OSError(errno, message)
// (module.cpp registers the translation).
#pragma once

#include <errno.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

namespace mcf {

// "what: strerror(err)", carrying err. Thrown wherever a system call fails outside a forked child.
class SysError : public std::runtime_error {
public:
    SysError(const std::string& what, int err) : std::runtime_error(what + ": " + std::strerror(err)), err_(err) {}
    int err() const { return err_; }

private:
    int err_;
};

// Throws SysError(what, errno) if rc < 0; returns rc.
inline long check_sys(long rc, const char* what) {
    if (rc < 0) throw SysError(what, errno);
    return rc;
}

// Owns one descriptor; closes it on destruction or reset. Move-only.
class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept {
        if (this != &o) reset(o.release());
        return *this;
    }
    ~UniqueFd() { reset(); }

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    explicit operator bool() const { return fd_ >= 0; }
    int release() { return std::exchange(fd_, -1); }
    void reset(int fd = -1) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

}  // namespace mcf
