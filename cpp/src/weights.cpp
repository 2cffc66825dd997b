#include "moelab/weights.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>

#include "moelab/gemm.hpp"
#include "moelab/init.hpp"
#include "moelab/check.hpp"

namespace moelab {

std::string shape_string(const std::vector<Index>& shape) {
    std::ostringstream s;
    s << "(";
    for (std::size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
    if (shape.size() == 1) s << ",";
    s << ")";
    return s.str();
}

WeightPtr weight_ptr(const Tensor& t) {
    WeightPtr w;
    if (t.dtype == DType::F32)
        w.f32 = t.f32.data();
    else
        w.bf16 = t.bf16.data();
    return w;
}

Index Tensor::numel() const {
    Index n = 1;
    for (Index d : shape) n *= d;
    return n;
}

std::size_t WeightSet::add(const std::string& name, std::vector<Index> shape, Index fan_in,
                           DType dtype) {
    Tensor t;
    t.name = name;
    t.shape = std::move(shape);
    t.dtype = dtype;
    if (dtype == DType::F32)
        t.f32.assign(std::size_t(t.numel()), 0.0f);
    else
        t.bf16.assign(std::size_t(t.numel()), 0);
    t.init_bound = float(1.0 / std::sqrt(double(fan_in)));
    tensors_.push_back(std::move(t));
    return tensors_.size() - 1;
}

void WeightSet::init_random(std::uint64_t seed) {
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
        Tensor& t = tensors_[i];
        const Index n = t.numel();
        if (t.dtype == DType::F32) {
            fill_uniform(t.f32.data(), n, t.init_bound, seed, std::uint64_t(i + 1), 0);
            continue;
        }
        // bfloat16: the float32 values of the same seed, rounded; in chunks (no full copy)
        const Index chunk = Index(1) << 20;
        std::vector<float> buf(std::size_t(std::min(n, chunk)));
        for (Index o = 0; o < n; o += chunk) {
            const Index m = std::min(chunk, n - o);
            fill_uniform(buf.data(), m, t.init_bound, seed, std::uint64_t(i + 1), o);
            convert_to_bf16(buf.data(), t.bf16.data() + o, m);
        }
    }
}

void WeightSet::copy_to_f32(const Tensor& t, float* dst) {
    if (t.dtype == DType::F32)
        std::memcpy(dst, t.f32.data(), t.f32.size() * sizeof(float));
    else
        convert_from_bf16(t.bf16.data(), dst, t.numel());
}

std::vector<std::string> WeightSet::names() const {
    std::vector<std::string> out;
    for (const Tensor& t : tensors_) out.push_back(t.name);
    return out;
}

const Tensor& WeightSet::find(const std::string& name) const {
    for (const Tensor& t : tensors_)
        if (t.name == name) return t;
    std::ostringstream s;
    s << "unknown weight '" << name << "'; this layer has:";
    for (const Tensor& t : tensors_) s << " " << t.name;
    throw std::invalid_argument(s.str());
}

Tensor& WeightSet::find(const std::string& name) {
    return const_cast<Tensor&>(static_cast<const WeightSet&>(*this).find(name));
}

void WeightSet::load(const std::vector<WeightView>& views, bool strict) {
    // Check everything first: nothing is copied unless every view is right.
    std::set<std::string> seen;
    for (const WeightView& v : views) {
        const Tensor& t = find(v.name);
        if (!seen.insert(v.name).second)
            throw std::invalid_argument(v.name + ": given twice");
        if (v.shape != t.shape)
            throw std::invalid_argument(v.name + ": expected " + shape_string(t.shape) + ", got " +
                                        shape_string(v.shape));
        require_finite(v.data, t.numel(), v.name.c_str());
    }
    if (strict && seen.size() != tensors_.size()) {
        std::ostringstream s;
        s << "missing weights (strict load):";
        for (const Tensor& t : tensors_)
            if (!seen.count(t.name)) s << " " << t.name << " " << shape_string(t.shape);
        throw std::invalid_argument(s.str());
    }
    for (const WeightView& v : views) {
        Tensor& t = find(v.name);
        if (t.dtype == DType::F32)
            std::memcpy(t.f32.data(), v.data, t.f32.size() * sizeof(float));
        else
            convert_to_bf16(v.data, t.bf16.data(), t.numel());
    }
}

void LayerWeights::init_random(std::uint64_t seed) {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    weights_.init_random(seed);
}

void LayerWeights::load_weights(const std::vector<WeightView>& views, bool strict) {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    weights_.load(views, strict);
}

std::uint64_t next_layer_id() noexcept {
    static std::atomic<std::uint64_t> counter{1};
    return counter.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace moelab
