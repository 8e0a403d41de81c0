// Harness helpers inside a generation child (see child.h). All state of the harness' C++ side lives in
// one ChildState. Touching few Python objects here keeps the child's copy-on-write page count low.
#include "child.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "frame.h"

namespace py = pybind11;

namespace mcf {
namespace {

constexpr int kCtlFd = 3;

struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
};

// The I/O sets this child holds (see the Zygote class in supervisor.cpp): stdin, stdout, stderr memfds.
struct ChildSet {
    int in = -1, out = -1, err = -1;
};

struct ChildState {
    uint32_t seq = 0;
    std::vector<ChildSet> sets;
    FileId expect[4];  // what fds 0, 1, 2 and 3 must hold while the current test runs
    bool have_expect = false;
};

ChildState& state() {
    static ChildState s;
    return s;
}

bool file_id(int fd, FileId& id) {
    struct stat st;
    if (fstat(fd, &st) != 0) return false;
    id.dev = st.st_dev;
    id.ino = st.st_ino;
    return true;
}

int64_t now_ns() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// fds 0/1/2 for a TEST frame: the set's files (the supervisor wrote the input and emptied the outputs).
bool prepare_test_fds(const Frame& f, std::vector<UniqueFd>& fds, uint32_t& index, uint32_t& last) {
    ChildState& cs = state();
    FieldReader r(f.payload);
    index = r.u32();
    last = r.u32();
    uint32_t set = r.u32();
    if (!r.done() || f.seq != cs.seq || set > 4096) return false;
    if (fds.size() == 3) {
        if (cs.sets.size() <= set) cs.sets.resize(set + 1);
        ChildSet& s = cs.sets[set];
        for (int* p : {&s.in, &s.out, &s.err})
            if (*p > kCtlFd) ::close(*p);
        s = {fds[0].release(), fds[1].release(), fds[2].release()};
    } else if (!fds.empty()) {
        return false;
    }
    if (cs.sets.size() <= set || cs.sets[set].in < 0) return false;
    const ChildSet& s = cs.sets[set];
    if (dup2(s.in, 0) < 0 || dup2(s.out, 1) < 0 || dup2(s.err, 2) < 0) return false;
    for (int i = 0; i < 4; ++i)
        if (!file_id(i, cs.expect[i])) return false;
    cs.have_expect = true;
    return true;
}

// Blocking: the next frame from the supervisor. For a TEST frame, fds 0/1/2 are laid out here.
// Returns (type, index, last); type 0 on EOF, a malformed frame, or descriptors that could not be set up.
py::tuple child_next() {
    Frame f;
    std::vector<UniqueFd> fds;
    uint32_t index = 0, last = 0;
    bool ok;
    {
        py::gil_scoped_release nogil;
        ok = recv_frame_blocking(kCtlFd, f, fds, 1u << 20) == 1 && f.seq == state().seq;
        if (ok && f.type == kTest) ok = prepare_test_fds(f, fds, index, last);
    }
    if (!ok) return py::make_tuple(0, 0, 0);
    return py::make_tuple(f.type, index, last);
}

bool send(uint32_t type, const std::string& payload) {
    py::gil_scoped_release nogil;
    return send_frame_blocking(kCtlFd, type, state().seq, payload);
}

bool send_begin(uint32_t index) {
    FieldWriter w;
    w.u32(index).i64(now_ns());
    return send(kBegin, w.str());
}

bool send_result(uint32_t index, int32_t status, bool dirty, double cpu, double wall, int64_t rss, py::bytes exc,
                 py::bytes msg, py::bytes value) {
    FieldWriter w;
    w.u32(index).i32(status).u32(dirty ? 1 : 0).f64(cpu).f64(wall).i64(rss).i64(now_ns());
    w.bytes(std::string(exc)).bytes(std::string(msg)).bytes(std::string(value));
    return send(kResult, w.str());
}

bool send_text(uint32_t type, py::bytes text) {
    FieldWriter w;
    w.bytes(std::string(text));
    return send(type, w.str());
}

// False if the program closed or replaced one of the harness' descriptors: fds 0/1/2 (not the test's
// files any more: an object of the program's could close them under a later test), the control socket
// (3), or a set's files. The harness then ends this child after reporting the test.
bool child_fds_ok() {
    const ChildState& cs = state();
    if (fcntl(kCtlFd, F_GETFD) < 0) return false;
    if (cs.have_expect) {
        for (int i = 0; i < 4; ++i) {
            FileId id;
            if (!file_id(i, id) || id.dev != cs.expect[i].dev || id.ino != cs.expect[i].ino) return false;
        }
    }
    for (const ChildSet& s : cs.sets)
        for (int f : {s.in, s.out, s.err})
            if (f >= 0 && fcntl(f, F_GETFD) < 0) return false;
    return true;
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

}  // namespace

void child_begin_generation(uint32_t seq) {
    ChildState& cs = state();
    cs.seq = seq;
    cs.sets.clear();
    cs.have_expect = false;
}

void init_child(py::module_& m) {
    py::module_ c = m.def_submodule("child", "Helpers for the harness inside a generation child (fd 3 = control "
                                                  "socket); not for use elsewhere");
    c.def("next", &child_next, "Blocking: (type, index, last) of the next frame; fds 0/1/2 laid out for a TEST");
    c.def("send_begin", &send_begin, py::arg("index"));
    c.def("send_result", &send_result, py::arg("index"), py::arg("status"), py::arg("dirty"), py::arg("cpu_s"),
          py::arg("wall_s"), py::arg("maxrss_kb"), py::arg("exc"), py::arg("message"), py::arg("value"));
    c.def("send_text", &send_text, py::arg("type"), py::arg("text"));
    c.def("fds_ok", &child_fds_ok);
    c.def("usage", &usage);
    c.def("dict_is_snapshot", &dict_is_snapshot, py::arg("live"), py::arg("snap"));
}

}  // namespace mcf
