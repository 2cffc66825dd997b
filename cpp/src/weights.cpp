#include "moelab/weights.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <limits>
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

WeightPtr weight_ptr(const Tensor& t) { return t.parts.empty() ? WeightPtr{} : t.parts[0]; }

bool Tensor::complete() const {
    return std::all_of(parts.begin(), parts.end(), [](const WeightPtr& p) { return p.present(); });
}

Index Tensor::numel() const {
    Index n = 1;
    for (Index d : shape) n *= d;
    return n;
}

std::vector<Index> Tensor::part_shape() const {
    const Index cols = shape.empty() ? 1 : shape.back();
    const Index rows = cols ? numel() / cols : 0;
    return {rows / num_parts, cols};
}

std::size_t Tensor::owned_bytes() const {
    return f32.size() * sizeof(float) + bf16.size() * sizeof(std::uint16_t);
}

namespace {

std::size_t element_size(DType d) { return d == DType::F32 ? sizeof(float) : sizeof(std::uint16_t); }

// Parts of a tensor from `count` blocks of its rows, each holding num_parts / count parts (none
// for a null block). Allocates nothing when t.parts has the capacity.
void point_parts_into_blocks(Tensor& t, const void* const* blocks, std::size_t count) {
    const Index per_block = t.num_parts / Index(count), n = t.part_numel();
    t.parts.assign(std::size_t(t.num_parts), WeightPtr{});
    for (Index p = 0; p < t.num_parts; ++p) {
        const Index offset = (p % per_block) * n;
        const void* block = blocks[std::size_t(p / per_block)];
        if (!block) continue;
        if (t.dtype == DType::F32)
            t.parts[std::size_t(p)].f32 = static_cast<const float*>(block) + offset;
        else
            t.parts[std::size_t(p)].bf16 = static_cast<const std::uint16_t*>(block) + offset;
    }
}

// What a change of the tensor's values may need, allocated before any change (std::bad_alloc
// then leaves it as it was): room for its part pointers and owner, and, unless its own storage
// has exactly `elements` elements, zero-filled storage of that many in f32 or bf16 (none for 0).
void reserve_for_values(Tensor& t, Index elements, AlignedVector<float>& f32,
                        AlignedVector<std::uint16_t>& bf16) {
    t.parts.reserve(std::size_t(t.num_parts));
    t.owners.reserve(1);
    const std::size_t own = t.dtype == DType::F32 ? t.f32.size() : t.bf16.size();
    if (elements == 0 || own == std::size_t(elements)) return;
    if (t.dtype == DType::F32)
        f32.resize(std::size_t(elements));
    else
        bf16.resize(std::size_t(elements));
}

// The tensor's values in storage of its own (what reserve_for_values gave it, if anything; the
// storage it replaces is given back with f32 and bf16): a borrow ends. Allocates nothing.
void take_storage(Tensor& t, AlignedVector<float>& f32, AlignedVector<std::uint16_t>& bf16) {
    if (!f32.empty() || !bf16.empty()) {
        t.f32.swap(f32);
        t.bf16.swap(bf16);
    }
    t.owners.clear();
}

// The start of the tensor's own storage.
void* storage_data(Tensor& t) {
    return t.dtype == DType::F32 ? static_cast<void*>(t.f32.data())
                                 : static_cast<void*>(t.bf16.data());
}

// Parts of the whole tensor in its own storage.
void point_parts_into_storage(Tensor& t) {
    const void* data = storage_data(t);
    point_parts_into_blocks(t, &data, 1);
}

// Parts [first, first + count) of the tensor, one after the other from `block`.
void point_parts_into_block(Tensor& t, const void* block, Index first, Index count) {
    const Index n = t.part_numel();
    for (Index p = 0; p < count; ++p) {
        WeightPtr& w = t.parts[std::size_t(first + p)];
        if (t.dtype == DType::F32)
            w.f32 = static_cast<const float*>(block) + p * n;
        else
            w.bf16 = static_cast<const std::uint16_t*>(block) + p * n;
    }
}

// Null blocks of a view (absent experts).
Index absent_blocks(const WeightView& v) {
    return Index(std::count(v.data.begin(), v.data.end(), nullptr));
}

// The elements of each block a view gives (one block: the whole tensor).
Index view_piece_numel(const Tensor& t, const WeightView& v) {
    return t.numel() / Index(v.data.size());
}

// The shape of each block of a view of `blocks` blocks: the tensor's for one, else
// (rows / blocks, last dimension).
std::vector<Index> block_shape(const Tensor& t, Index blocks) {
    if (blocks == 1) return t.shape;
    const std::vector<Index> part = t.part_shape();
    return {part[0] * t.num_parts / blocks, part[1]};
}

bool can_borrow(const Tensor& t, const WeightView& v) {
    if (!v.owner || v.dtype != t.dtype) return false;
    const std::size_t align = element_size(t.dtype);
    for (const void* p : v.data)
        if (reinterpret_cast<std::uintptr_t>(p) % align != 0) return false;
    return true;
}

// Copies a block of a view (n elements at src) into the tensor's own storage at element
// `offset`, converting to the tensor's dtype.
void copy_piece(Tensor& t, const WeightView& v, const void* src, Index offset, Index n) noexcept {
    if (t.dtype == DType::F32) {
        float* dst = t.f32.data() + offset;
        if (v.dtype == DType::F32)
            std::memcpy(dst, src, std::size_t(n) * sizeof(float));
        else
            convert_from_bf16(static_cast<const std::uint16_t*>(src), dst, n);
    } else {
        std::uint16_t* dst = t.bf16.data() + offset;
        if (v.dtype == DType::BF16)
            std::memcpy(dst, src, std::size_t(n) * sizeof(std::uint16_t));
        else
            convert_to_bf16(static_cast<const float*>(src), dst, n);
    }
}

}  // namespace

std::size_t WeightSet::add(const std::string& name, std::vector<Index> shape, Index fan_in,
                           DType dtype, Index num_parts) {
    Tensor t;
    t.name = name;
    t.shape = std::move(shape);
    t.dtype = dtype;
    t.num_parts = num_parts;
    t.init_bound = float(1.0 / std::sqrt(double(fan_in)));
    tensors_.push_back(std::move(t));
    return tensors_.size() - 1;
}

void WeightSet::init_random(std::uint64_t seed) {
    // Every allocation before any value changes.
    std::vector<AlignedVector<float>> f32_storage(tensors_.size());
    std::vector<AlignedVector<std::uint16_t>> bf16_storage(tensors_.size());
    Index largest_bf16 = 0;
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
        reserve_for_values(tensors_[i], tensors_[i].numel(), f32_storage[i], bf16_storage[i]);
        if (tensors_[i].dtype == DType::BF16) largest_bf16 = std::max(largest_bf16, tensors_[i].numel());
    }
    const Index chunk = Index(1) << 20;
    std::vector<float> buf(std::size_t(std::min(largest_bf16, chunk)));
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
        take_storage(tensors_[i], f32_storage[i], bf16_storage[i]);
        point_parts_into_storage(tensors_[i]);
    }
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
        Tensor& t = tensors_[i];
        const Index n = t.numel();
        if (t.init_constant && t.dtype == DType::F32) {
            std::fill(t.f32.data(), t.f32.data() + n, t.init_value);
            continue;
        }
        if (t.dtype == DType::F32) {
            fill_uniform(t.f32.data(), n, t.init_bound, seed, std::uint64_t(i + 1), 0);
            continue;
        }
        // bfloat16: the float32 values of the same seed, rounded; in chunks (no full copy)
        for (Index o = 0; o < n; o += chunk) {
            const Index m = std::min(chunk, n - o);
            fill_uniform(buf.data(), m, t.init_bound, seed, std::uint64_t(i + 1), o);
            convert_to_bf16(buf.data(), t.bf16.data() + o, m);
        }
    }
}

void WeightSet::require_values() const {
    for (const Tensor& t : tensors_)
        if (!t.has_values())
            throw std::invalid_argument(t.name + ": the layer has no weights yet (init_random or "
                                        "load_weights first)");
}

std::size_t WeightSet::owned_bytes() const {
    std::size_t n = 0;
    for (const Tensor& t : tensors_) n += t.owned_bytes();
    return n;
}

void WeightSet::copy_to_f32(const Tensor& t, float* dst) {
    const Index n = t.part_numel();
    for (std::size_t p = 0; p < t.parts.size(); ++p) {
        const WeightPtr& w = t.parts[p];
        if (!w.present())
            std::fill(dst + Index(p) * n, dst + Index(p + 1) * n,
                      std::numeric_limits<float>::quiet_NaN());
        else if (w.f32)
            std::memcpy(dst + Index(p) * n, w.f32, std::size_t(n) * sizeof(float));
        else
            convert_from_bf16(w.bf16, dst + Index(p) * n, n);
    }
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

namespace {

// Which experts of a stack (Tensor::experts > 0) a view gives: all of an expert's blocks present,
// or all absent; std::invalid_argument naming the block otherwise.
std::vector<bool> experts_given(const Tensor& t, const WeightView& v) {
    if (absent_blocks(v) == 0) return std::vector<bool>(std::size_t(t.experts), true);
    // null blocks come only with blocks a multiple of the experts (checked before)
    const Index blocks = Index(v.data.size()), per_expert = blocks / t.experts;
    std::vector<bool> given(std::size_t(t.experts));
    for (Index e = 0; e < t.experts; ++e) {
        given[std::size_t(e)] = v.data[std::size_t(e * per_expert)] != nullptr;
        for (Index b = e * per_expert + 1; b < (e + 1) * per_expert; ++b)
            if ((v.data[std::size_t(b)] != nullptr) != given[std::size_t(e)])
                throw std::invalid_argument(
                    v.name + "[" + std::to_string(b) + "]: expert " + std::to_string(e) +
                    " given in part (its parts must all be arrays, or all None)");
    }
    return given;
}

// Which experts of a stack the tensor holds now.
std::vector<bool> experts_held(const Tensor& t) {
    const Index per_expert = t.num_parts / t.experts;
    std::vector<bool> held(std::size_t(t.experts));
    for (Index e = 0; e < t.experts; ++e) held[std::size_t(e)] = t.parts[std::size_t(e * per_expert)].present();
    return held;
}

// "[1, 2]" of the indices where a and b differ (the first 8).
std::string differing(const std::vector<bool>& a, const std::vector<bool>& b) {
    std::string out = "[";
    int shown = 0;
    for (std::size_t e = 0; e < a.size() && shown < 8; ++e)
        if (a[e] != b[e]) out += (shown++ ? ", " : "") + std::to_string(e);
    return out + "]";
}

}  // namespace

void WeightSet::load(const std::vector<WeightView>& views, bool strict) {
    // Check everything first: nothing changes unless every view is right.
    std::set<std::string> seen;
    for (const WeightView& v : views) {
        const Tensor& t = find(v.name);
        if (!seen.insert(v.name).second)
            throw std::invalid_argument(v.name + ": given twice");
        const Index blocks = Index(v.data.size());
        if (blocks < 1 || t.num_parts % blocks != 0)
            throw std::invalid_argument(v.name + ": expected the whole tensor " +
                                        shape_string(t.shape) + " or its " +
                                        std::to_string(t.num_parts) + " parts " +
                                        shape_string(t.part_shape()) + " (or a number of blocks "
                                        "dividing that), got " + std::to_string(blocks) + " parts");
        const Index absent = absent_blocks(v);
        if (absent && (t.experts == 0 || blocks % t.experts != 0))
            throw std::invalid_argument(
                v.name + ": None (an expert this layer does not hold) is only for the routed "
                "experts' stacks given per expert" +
                (t.experts ? " (" + std::to_string(t.experts) + " experts, got " +
                                 std::to_string(blocks) + " parts)"
                           : std::string()));
        if (absent) experts_given(t, v);  // throws for an expert given in part
        const std::vector<Index> expected = block_shape(t, blocks);
        if (absent < blocks && v.shape != expected)
            throw std::invalid_argument(v.name + (blocks == 1 ? "" : " (each part)") +
                                        ": expected " + shape_string(expected) + ", got " +
                                        shape_string(v.shape));
        const Index n = view_piece_numel(t, v);
        for (const void* p : v.data) {
            if (!p) continue;
            if (v.dtype == DType::F32)
                require_finite(static_cast<const float*>(p), n, v.name.c_str());
            else
                require_finite(static_cast<const std::uint16_t*>(p), n, v.name.c_str());
        }
    }
    if (strict && seen.size() != tensors_.size()) {
        std::ostringstream s;
        s << "missing weights (strict load):";
        for (const Tensor& t : tensors_)
            if (!seen.count(t.name)) s << " " << t.name << " " << shape_string(t.shape);
        throw std::invalid_argument(s.str());
    }
    for (const Tensor& t : tensors_)
        if (!t.has_values() && !seen.count(t.name))
            throw std::invalid_argument(t.name + ": missing, and the layer has no value for it yet");
    // The stacks of experts must hold the same experts after the load.
    const Tensor* first = nullptr;
    std::vector<bool> first_held;
    for (const Tensor& t : tensors_) {
        if (t.experts == 0) continue;
        const auto v = std::find_if(views.begin(), views.end(),
                                    [&](const WeightView& w) { return w.name == t.name; });
        const std::vector<bool> held =
            v != views.end() ? experts_given(t, *v) : experts_held(t);
        if (!first) {
            first = &t;
            first_held = held;
        } else if (held != first_held) {
            throw std::invalid_argument(t.name + " and " + first->name +
                                        " would hold different experts (they differ at " +
                                        differing(held, first_held) +
                                        "): give an expert's gate, up and down together");
        }
    }
    // Storage for the copies and room for the part pointers (the only step that may throw,
    // std::bad_alloc), before any value changes: the commit below allocates nothing. A stack
    // given in part stores only the experts given.
    std::vector<AlignedVector<float>> f32_storage(views.size());
    std::vector<AlignedVector<std::uint16_t>> bf16_storage(views.size());
    for (std::size_t i = 0; i < views.size(); ++i) {
        Tensor& t = find(views[i].name);
        const Index given = Index(views[i].data.size()) - absent_blocks(views[i]);
        reserve_for_values(t, can_borrow(t, views[i]) ? 0 : given * view_piece_numel(t, views[i]),
                           f32_storage[i], bf16_storage[i]);
    }
    for (std::size_t i = 0; i < views.size(); ++i) {
        const WeightView& v = views[i];
        Tensor& t = find(v.name);
        if (can_borrow(t, v)) {
            AlignedVector<float>().swap(t.f32);  // the own storage is given back
            AlignedVector<std::uint16_t>().swap(t.bf16);
            t.owners.assign(1, v.owner);
            point_parts_into_blocks(t, v.data.data(), v.data.size());
            continue;
        }
        take_storage(t, f32_storage[i], bf16_storage[i]);
        if (absent_blocks(v) == Index(v.data.size())) {  // none given: no storage at all
            AlignedVector<float>().swap(t.f32);
            AlignedVector<std::uint16_t>().swap(t.bf16);
        }
        // The given blocks one after the other in the storage; an absent block's parts null.
        const Index n = view_piece_numel(t, v), per_block = t.num_parts / Index(v.data.size());
        const std::size_t element = element_size(t.dtype);
        char* storage = static_cast<char*>(storage_data(t));
        t.parts.assign(std::size_t(t.num_parts), WeightPtr{});
        Index next = 0;
        for (std::size_t b = 0; b < v.data.size(); ++b) {
            if (!v.data[b]) continue;
            copy_piece(t, v, v.data[b], next * n, n);
            point_parts_into_block(t, storage + std::size_t(next * n) * element,
                                   Index(b) * per_block, per_block);
            ++next;
        }
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
