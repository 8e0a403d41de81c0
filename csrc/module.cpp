// The pybind11 module microcoder_fast._C. Every part of the core is registered here, explicitly and in
// order (no part registers another): info, the wire protocol, the sandbox primitives, the zygote loop
// (added to _C.sandbox), the child harness helpers and the supervisor's Zygote class.
#include <pybind11/pybind11.h>

#include "executor.h"
#include "fd.h"
#include "frame.h"
#include "info.h"

PYBIND11_MODULE(_C, m) {
    m.doc() = "microcoder_fast compiled core: capability queries and the sandboxed fork-server executor";
    pybind11::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const mcf::SysError& e) {
            PyErr_SetObject(PyExc_OSError, pybind11::make_tuple(e.err(), e.what()).ptr());
        }
    });
    mcf::init_info(m);
    mcf::init_frame(m);
    mcf::init_sandbox(m);
    mcf::init_zygote(m);
    mcf::init_child(m);
    mcf::init_supervisor(m);
}
