// Helpers for the harness inside a generation child (microcoder_fast/executor/_child.py): receiving a
// test's descriptors, sending its reports, checking that the program left the harness' descriptors alone.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

namespace mcf {

// Called once in a freshly forked child, before any Python runs: the generation's sequence number that
// every frame this child sends carries.
void child_begin_generation(uint32_t seq);

void init_child(pybind11::module_& m);

}  // namespace mcf
