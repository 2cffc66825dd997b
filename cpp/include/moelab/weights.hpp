// WeightSet: named, shaped tensors (float32 or bfloat16) owned by a layer, loaded all or nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "moelab/aligned.hpp"
#include "moelab/types.hpp"

namespace moelab {

// A weight tensor's data as the kernels read it: float32 or bfloat16 (exactly one pointer set,
// or none for an absent tensor).
struct WeightPtr {
    const float* f32 = nullptr;
    const std::uint16_t* bf16 = nullptr;
    bool present() const { return f32 || bf16; }
};

// A named, shaped tensor. Its data is either owned (f32 or bf16 storage, filled by init_random or
// a load by copy) or borrowed: read in place from memory someone else holds (a memory-mapped
// checkpoint), kept alive by `owners`. The kernels read it through `parts`: `num_parts` equal
// blocks of whole rows (a stack's experts: an expert's gate, up or down), each with its own
// pointer, so that parts lying apart in memory (a checkpoint's per-expert tensors) are read where
// they lie; for an owned or wholly borrowed tensor the parts point into one block. A tensor
// without values yet (neither initialised nor loaded) has no parts.
struct Tensor {
    std::string name;
    std::vector<Index> shape;
    DType dtype = DType::F32;
    Index num_parts = 1;
    AlignedVector<float> f32;           // owned row-major float32, when dtype == F32
    AlignedVector<std::uint16_t> bf16;  // owned row-major bfloat16 bits, when dtype == BF16
    std::vector<WeightPtr> parts;       // (num_parts): where each part's data lies
    std::vector<std::shared_ptr<const void>> owners;  // keep borrowed data alive
    // > 0: the tensor is a stack of this many experts (num_parts / experts parts each) that a
    // load may give in part: an absent expert's parts are null (a layer holding some experts,
    // for expert parallelism), and only the present ones take storage.
    Index experts = 0;
    float init_bound = 0.0f;  // random init: uniform in ±init_bound (1/sqrt(fan_in))
    bool init_constant = false;  // random init: every value init_value instead (a norm weight's
    float init_value = 0.0f;     // identity), so that one init under one lock sets the layer

    Index numel() const;
    Index part_numel() const { return numel() / num_parts; }
    // (rows / num_parts, last dimension): the shape of one part.
    std::vector<Index> part_shape() const;
    bool has_values() const { return !parts.empty(); }
    bool borrowed() const { return !owners.empty(); }
    // Bytes of the storage this tensor owns (0 when borrowed).
    std::size_t owned_bytes() const;
    // Whether every part has data (false for a stack loaded in part).
    bool complete() const;
    // The float32 data of an owned or wholly borrowed float32 tensor (parts[0]).
    const float* f32_data() const { return parts.empty() ? nullptr : parts[0].f32; }
};

// The tensor's data as one pointer (parts[0]: the whole tensor when it has one part or is owned).
WeightPtr weight_ptr(const Tensor& t);

// A weight offered for loading: row-major float32 or bfloat16 data, the whole tensor (one
// pointer, `shape` the tensor's) or B blocks of its rows, B dividing num_parts (B pointers,
// `shape` a block's: (rows / B, last dimension); B = num_parts: each part on its own). For a
// stack of experts given per expert (B a multiple of Tensor::experts) a null pointer is an
// absent block (then `shape` is that of the others; any shape when all are null).
// With an `owner` (what keeps the data alive) the tensor may borrow it (WeightSet::load); without
// one it is copied.
struct WeightView {
    std::string name;
    std::vector<Index> shape;
    DType dtype = DType::F32;
    std::vector<const void*> data;
    std::shared_ptr<const void> owner;
};

std::string shape_string(const std::vector<Index>& shape);

// A number unique to each token-mixer layer object of this process: the owner its caches and
// states carry, so that a layer refuses another layer's.
std::uint64_t next_layer_id() noexcept;

class WeightSet {
  public:
    // Adds a tensor without values (no storage until init_random or a load) whose random init
    // has bound 1/sqrt(fan_in), read by the kernels as num_parts blocks of rows; returns its index.
    std::size_t add(const std::string& name, std::vector<Index> shape, Index fan_in,
                    DType dtype = DType::F32, Index num_parts = 1);
    // Fills every tensor uniformly in ±init_bound, deterministically for a seed, in storage of
    // its own (a borrow ends).
    void init_random(std::uint64_t seed);
    // Throws std::invalid_argument unless every tensor has values (a layer made but neither
    // initialised nor loaded).
    void require_values() const;
    // Bytes of weight storage the set owns (borrowed tensors count 0).
    std::size_t owned_bytes() const;
    std::size_t size() const { return tensors_.size(); }
    const Tensor& at(std::size_t i) const { return tensors_[i]; }
    Tensor& at(std::size_t i) { return tensors_[i]; }
    // Throws std::invalid_argument naming the known names when `name` is unknown.
    const Tensor& find(const std::string& name) const;
    Tensor& find(const std::string& name);
    std::vector<std::string> names() const;
    // The tensor as float32 (bfloat16 widened), into dst of numel() floats; an absent part
    // (an expert a layer loaded in part does not hold) reads as NaN.
    static void copy_to_f32(const Tensor& t, float* dst);
    // Checks every view (known name, no duplicate, exact shape and block count, finite values,
    // and with `strict` that every tensor is given; without it, that every tensor has values
    // after the load) before changing anything: on a throw (std::invalid_argument, or
    // std::bad_alloc while storage is allocated) the set is unchanged. A view with an owner, in
    // the tensor's dtype, with every pointer aligned to its element size is borrowed (read in
    // place; the tensor's own storage is freed); any other is copied (converted to the tensor's
    // dtype) into storage of the tensor's own. A stack of experts may be given in part (null
    // blocks); after the load every such stack of the set must hold the same experts, each
    // with all its parts.
    void load(const std::vector<WeightView>& views, bool strict);

  private:
    std::vector<Tensor> tensors_;
};

// What every layer with weights holds: its WeightSet behind a reader-writer lock. Forwards read
// the weights together (under read_lock); a load or a random init waits for running forwards,
// then changes the weights all or nothing.
class LayerWeights {
  public:
    virtual ~LayerWeights() = default;
    DType weight_dtype() const { return dtype_; }
    const WeightSet& weights() const { return weights_; }
    WeightSet& weights() { return weights_; }
    // Uniform in ±1/sqrt(fan_in) per tensor (biases: of their matrix), as torch.nn.Linear; a
    // tensor marked init_constant (a token mixer's norm weight) its init_value; deterministic for
    // a seed, whatever the thread count; one step under the write lock.
    void init_random(std::uint64_t seed);
    // All or nothing (WeightSet::load).
    void load_weights(const std::vector<WeightView>& views, bool strict);

  protected:
    // dtype: the storage of the tensors added in the layer's weight dtype.
    explicit LayerWeights(DType dtype) : dtype_(dtype) {}
    // Throws std::invalid_argument (WeightSet::require_values) for a layer without weights.
    std::shared_lock<std::shared_mutex> read_lock() const {
        std::shared_lock<std::shared_mutex> lock(unchecked_read_lock());
        weights_.require_values();
        return lock;
    }
    // The same for a reader that accepts a layer without weights.
    std::shared_lock<std::shared_mutex> unchecked_read_lock() const {
        return std::shared_lock<std::shared_mutex>(mutex_);
    }
    WeightSet weights_;

  private:
    DType dtype_;
    mutable std::shared_mutex mutex_;
};

}  // namespace moelab
