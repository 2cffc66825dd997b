// Conversions at the Python boundary: strict float32 C-contiguous arrays, no silent copies.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "moelab/check.hpp"
#include "moelab/heap_probe.hpp"
#include "moelab/names.hpp"
#include "moelab/spec.hpp"
#include "moelab/weights.hpp"

namespace moelab::bindings {

namespace py = pybind11;

void register_info(py::module_& m);
void register_ops(py::module_& m);
void register_spec(py::module_& m);
void register_layer(py::module_& m);
void register_deltanet(py::module_& m);
void register_testing(py::module_& m);
void register_decoder_ops(py::module_& m);
void register_attention(py::module_& m);
void register_mla(py::module_& m);

// Runs f() with the GIL released and the core's heap allocations counted (heap_probe.hpp): how
// the bindings call every kernel, after all conversions.
template <class F>
void run_released(F&& f) {
    py::gil_scoped_release release;
    HeapWatch watch;
    f();
}

inline std::vector<Index> shape_of(const py::array& a) {
    return std::vector<Index>(a.shape(), a.shape() + a.ndim());
}

// The array itself if it is float32 and C-contiguous with `ndim` dimensions (-1: any);
// TypeError / ValueError naming `name` otherwise. moelab's Python layer converts before calling.
inline py::array_t<float> require_f32(const py::handle& obj, const std::string& name, int ndim) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(name + ": expected a numpy.ndarray, got " +
                             std::string(py::str(py::type::of(obj).attr("__name__"))));
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (!a.dtype().is(py::dtype::of<float>()))
        throw py::type_error(name + ": expected float32, got " + std::string(py::str(a.dtype())) +
                             " (moelab._core never converts; the moelab wrappers do)");
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(name + ": expected a C-contiguous array");
    if (ndim >= 0 && a.ndim() != ndim)
        throw py::value_error(name + ": expected " + std::to_string(ndim) + " dimensions, got shape " +
                              shape_string(shape_of(a)));
    return py::reinterpret_borrow<py::array_t<float>>(a);
}

// A weight as the kernels read it in place: a C-contiguous numpy array of float32, or of uint16
// holding bfloat16 bits, with `ndim` dimensions (-1: any), every value finite (scanned unless
// `checked`: the caller checked these values once and keeps them unchanged, as DecoderModel its
// tables); its pointer set in `ptr`. TypeError / ValueError naming `name` otherwise. The array
// returned keeps the data alive.
inline py::array require_weight(const py::handle& obj, const std::string& name, int ndim,
                                WeightPtr& ptr, bool checked = false) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(name + ": expected a numpy.ndarray, got " +
                             std::string(py::str(py::type::of(obj).attr("__name__"))));
    py::array a = py::reinterpret_borrow<py::array>(obj);
    const bool bf16 = a.dtype().is(py::dtype::of<std::uint16_t>());
    if (!bf16 && !a.dtype().is(py::dtype::of<float>()))
        throw py::type_error(name + ": expected float32, or uint16 holding bfloat16 bits, got " +
                             std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(name + ": expected a C-contiguous array");
    if (ndim >= 0 && a.ndim() != ndim)
        throw py::value_error(name + ": expected " + std::to_string(ndim) + " dimensions, got shape " +
                              shape_string(shape_of(a)));
    ptr = WeightPtr{};
    if (bf16) {
        ptr.bf16 = static_cast<const std::uint16_t*>(a.data());
        if (!checked) require_finite(ptr.bf16, a.size(), name.c_str());
    } else {
        ptr.f32 = static_cast<const float*>(a.data());
        if (!checked) require_finite(ptr.f32, a.size(), name.c_str());
    }
    return a;
}

// A float32 tensor of the layer's own: a read/write view held by `owner` (no copy; keeps the
// owner alive). A borrowed float32 tensor in one block: a read-only view of the data it reads.
// Any other (bfloat16, which has no NumPy dtype, borrowed in parts, or a stack of experts held
// in part, whose absent experts read as NaN): a read-only float32 copy.
inline py::array_t<float> tensor_view(Tensor& t, py::handle owner) {
    std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
    if (t.dtype == DType::F32 && !t.borrowed() && t.complete()) return py::array_t<float>(shape, t.f32.data(), owner);
    const bool one_block = t.dtype == DType::F32 && t.parts.size() == 1;
    py::array_t<float> out = one_block ? py::array_t<float>(shape, t.f32_data(), owner)
                                       : py::array_t<float>(shape);
    if (!one_block) WeightSet::copy_to_f32(t, out.mutable_data());
    py::detail::array_proxy(out.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
    return out;
}

// What keeps Python objects (the arrays a tensor borrows) alive: a reference to them, dropped
// with the GIL held (the last borrower may let go on any thread).
inline std::shared_ptr<const void> keep_alive(const py::object& obj) {
    auto* ref = new py::object(obj);
    return std::shared_ptr<const void>(ref->ptr(), [ref](const void*) {
        py::gil_scoped_acquire gil;
        delete ref;
    });
}

constexpr Named<DType> kDTypes[] = {{DType::F32, "float32"}, {DType::BF16, "bfloat16"}};

// The weight dtype named `name`; ValueError naming weight_dtype otherwise.
inline DType parse_dtype(const std::string& name) { return parse_name(kDTypes, name, "weight_dtype"); }
inline std::string dtype_name(DType d) { return name_of(kDTypes, d); }

// One array of a weight to load: float32, or uint16 holding bfloat16 bits, C-contiguous;
// TypeError / ValueError naming `name` otherwise.
inline py::array load_array(const py::handle& obj, const std::string& name) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(name + ": expected a numpy.ndarray, got " +
                             std::string(py::str(py::type::of(obj).attr("__name__"))));
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (!a.dtype().is(py::dtype::of<float>()) && !a.dtype().is(py::dtype::of<std::uint16_t>()))
        throw py::type_error(name + ": expected float32, or uint16 holding bfloat16 bits, got " +
                             std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(name + ": expected a C-contiguous array");
    return a;
}

// Weight views from a dict of name -> an array (the whole tensor) or a list of arrays (its
// parts, all of one dtype and shape; None for an absent expert's part, which WeightSet::load
// accepts only for a stack of experts given per expert), each float32 or uint16 (bfloat16 bits)
// C-contiguous. With `borrow` a view of read-only arrays (a memory-mapped file's) carries an
// owner that keeps them alive, so that the tensor may read them in place; writable arrays,
// which their holder may change after the load's checks, are copied (the dict keeps them alive
// meanwhile).
inline std::vector<WeightView> weight_views(const py::dict& weights, bool borrow) {
    std::vector<WeightView> views;
    for (auto item : weights) {
        if (!py::isinstance<py::str>(item.first)) throw py::type_error("weight names must be str");
        WeightView v;
        v.name = py::cast<std::string>(item.first);
        const bool parts = py::isinstance<py::list>(item.second) || py::isinstance<py::tuple>(item.second);
        std::vector<py::array> arrays;  // the arrays given
        std::vector<bool> given;        // per part: an array (false: None)
        if (parts) {
            const py::sequence seq = py::reinterpret_borrow<py::sequence>(item.second);
            if (seq.size() == 0) throw py::value_error(v.name + ": an empty list of parts");
            for (std::size_t i = 0; i < seq.size(); ++i) {
                given.push_back(!seq[i].is_none());
                if (given.back())
                    arrays.push_back(load_array(seq[i], v.name + "[" + std::to_string(i) + "]"));
            }
        } else {
            arrays.push_back(load_array(item.second, v.name));
            given.push_back(true);
        }
        if (!arrays.empty()) {
            v.shape = shape_of(arrays[0]);
            v.dtype = arrays[0].dtype().is(py::dtype::of<float>()) ? DType::F32 : DType::BF16;
        }
        const std::size_t first = std::size_t(std::find(given.begin(), given.end(), true) - given.begin());
        std::size_t next = 0;
        for (std::size_t i = 0; i < given.size(); ++i) {
            if (!given[i]) {
                v.data.push_back(nullptr);
                continue;
            }
            const py::array& a = arrays[next++];
            if (!a.dtype().is(arrays[0].dtype()) || shape_of(a) != v.shape)
                throw py::value_error(v.name + ": the parts must share one shape and dtype: [" +
                                      std::to_string(first) + "] is " + shape_string(v.shape) + " " +
                                      std::string(py::str(arrays[0].dtype())) + ", [" +
                                      std::to_string(i) + "] is " + shape_string(shape_of(a)) +
                                      " " + std::string(py::str(a.dtype())));
            v.data.push_back(a.data());
        }
        const bool read_only = std::none_of(arrays.begin(), arrays.end(), [](const py::array& a) {
            return a.writeable();
        });
        if (borrow && read_only) {
            py::list keep;
            for (const py::array& a : arrays) keep.append(a);
            v.owner = keep_alive(keep);
        }
        views.push_back(std::move(v));
    }
    return views;
}

// The weight methods of a bound layer class (LayerWeights: a weights() WeightSet,
// weight_dtype(), init_random(seed), load_weights(views, strict)).
template <class Layer, class PyClass>
PyClass& def_weight_methods(PyClass& cls) {
    return cls
        .def_property_readonly("weight_dtype",
                               [](const Layer& l) { return dtype_name(l.weight_dtype()); })
        .def("init_random", &Layer::init_random, py::arg("seed"),
             py::call_guard<py::gil_scoped_release>())
        .def("weight_names", [](const Layer& l) { return l.weights().names(); })
        .def("weight_shapes", [](const Layer& l) {
                 py::dict out;
                 for (std::size_t i = 0; i < l.weights().size(); ++i) {
                     const Tensor& t = l.weights().at(i);
                     out[py::str(t.name)] = py::tuple(py::cast(t.shape));
                 }
                 return out;
             }, "name -> shape of every weight (known before the layer has values).")
        .def("weight", [](py::object self, const std::string& name) {
                 Layer& l = self.cast<Layer&>();
                 return tensor_view(l.weights().find(name), self);
             }, py::arg("name"), "A float32 view of a weight (no copy; a bfloat16 one: a read-only "
             "copy).")
        .def("load_weights", [](Layer& l, const py::dict& weights, bool strict, bool borrow) {
                 std::vector<WeightView> views = weight_views(weights, borrow);
                 py::gil_scoped_release release;
                 l.load_weights(views, strict);
             }, py::arg("weights"), py::arg("strict") = true, py::arg("borrow") = false,
             "All or nothing. With borrow, read-only arrays in the tensor's dtype are read in "
             "place (kept alive by the layer), the others copied.")
        .def_property_readonly("owned_weight_bytes",
                               [](const Layer& l) { return l.weights().owned_bytes(); },
                               "Bytes of weight storage the layer owns (borrowed tensors: 0).");
}

// A bound token mixer (Attention, MultiHeadLatentAttention, GatedDeltaNet; the weight methods
// and id are its base _TokenMixer's): a constructor from (spec, weight_dtype), spec, and the repr
// "_core.<name>(<spec>, <dtype>)".
template <class Layer, class Spec, class PyClass>
PyClass& def_token_mixer(PyClass& cls, const std::string& name) {
    return cls
        .def(py::init([](const Spec& spec, const std::string& dtype) {
                 return std::make_shared<Layer>(spec, parse_dtype(dtype));
             }), py::arg("spec"), py::arg("weight_dtype") = "float32")
        .def_property_readonly("spec", &Layer::spec)
        .def("__repr__", [name](const Layer& l) {
            return "_core." + name + "(" + l.spec().describe() + ", " +
                   dtype_name(l.weight_dtype()) + ")";
        });
}

// A bound spec class (MoESpec, AttentionSpec, MlaSpec, DeltaNetSpec) whose repr is
// "<name>(<spec.describe()>)".
template <class Spec>
py::class_<Spec> spec_class(py::module_& m, const std::string& name, const char* doc) {
    py::class_<Spec> cls(m, name.c_str(), doc);
    cls.def("__repr__", [name](const Spec& s) { return name + "(" + s.describe() + ")"; });
    return cls;
}

// A spec checked (std::invalid_argument naming the field, a ValueError in Python) and returned.
template <class Spec>
Spec validated(const Spec& spec) {
    spec.validate();
    return spec;
}

// A float32 array of `shape` filled by read(data) with the GIL released: a copy out of a cache
// or state, whose own lock may wait for a running forward.
template <class F>
py::array_t<float> read_released(std::vector<py::ssize_t> shape, F&& read) {
    py::array_t<float> out(shape);
    float* data = out.mutable_data();
    py::gil_scoped_release release;
    read(data);
    return out;
}

// y (T, H) for a token mixer's x (T, H): x is checked (float32, C-contiguous, H wide; a
// ValueError names it and its shape), then fn(x, T, y) runs with the GIL released
// (run_released: the core's allocations counted).
template <class F>
py::array_t<float> forward_rows(const py::handle& x_obj, Index H, F&& fn) {
    py::array_t<float> x = require_f32(x_obj, "x", 2);
    if (x.shape(1) != H)
        throw py::value_error("x: expected (T, H=" + std::to_string(H) + "), got " +
                              shape_string(shape_of(x)));
    const Index T = x.shape(0);
    py::array_t<float> y({T, H});
    float* yp = y.mutable_data();
    const float* xp = x.data();
    run_released([&] { fn(xp, T, yp); });
    return y;
}

}  // namespace moelab::bindings
