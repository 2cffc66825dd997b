// moelab._core: the compiled core. One register_* function per area (register_*.cpp).
#include "convert.hpp"

#ifndef MOELAB_VERSION
#define MOELAB_VERSION "0.0.0"
#endif

PYBIND11_MODULE(_core, m) {
    m.doc() = "moelab's C++ core (private: use the moelab package)";
    m.attr("__version__") = MOELAB_VERSION;
    moelab::bindings::register_info(m);
    moelab::bindings::register_spec(m);
    moelab::bindings::register_ops(m);
    moelab::bindings::register_layer(m);
    moelab::bindings::register_deltanet(m);
    moelab::bindings::register_testing(m);
    moelab::bindings::register_decoder_ops(m);
    moelab::bindings::register_attention(m);
    moelab::bindings::register_mla(m);
}
