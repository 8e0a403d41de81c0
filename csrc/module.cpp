// The pybind11 module microcoder_fast._C. Each part of the core registers itself here.
#include <pybind11/pybind11.h>

#include "executor.h"
#include "info.h"

PYBIND11_MODULE(_C, m) {
    m.doc() = "microcoder_fast compiled core: capability queries and the sandboxed fork-server executor";
    mcf::init_info(m);
    mcf::init_sandbox(m);
    mcf::init_supervisor(m);
}
