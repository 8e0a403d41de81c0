// Version and capability queries of the compiled core.
#pragma once
#include <pybind11/pybind11.h>

namespace mcf {
void init_info(pybind11::module_& m);
}  // namespace mcf
