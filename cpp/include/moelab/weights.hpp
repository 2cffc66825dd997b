// WeightSet: named, shaped tensors (float32 or bfloat16) owned by a layer, loaded all or nothing.
#pragma once

#include <cstdint>
#include <shared_mutex>
#include <string>
#include <vector>

#include "moelab/aligned.hpp"
#include "moelab/types.hpp"

namespace moelab {

struct Tensor {
    std::string name;
    std::vector<Index> shape;
    DType dtype = DType::F32;
    AlignedVector<float> f32;           // row-major float32, when dtype == F32
    AlignedVector<std::uint16_t> bf16;  // row-major bfloat16 bits, when dtype == BF16
    Index numel() const;
    float init_bound = 0.0f;  // random init: uniform in ±init_bound (1/sqrt(fan_in))
};

// A weight tensor's data as the kernels read it: float32 or bfloat16 (exactly one pointer set,
// or none for an absent tensor).
struct WeightPtr {
    const float* f32 = nullptr;
    const std::uint16_t* bf16 = nullptr;
    bool present() const { return f32 || bf16; }
};
WeightPtr weight_ptr(const Tensor& t);

// A weight offered for loading: a view of a float32 row-major buffer.
struct WeightView {
    std::string name;
    std::vector<Index> shape;
    const float* data = nullptr;
};

std::string shape_string(const std::vector<Index>& shape);

// A number unique to each token-mixer layer object of this process: the owner its caches and
// states carry, so that a layer refuses another layer's.
std::uint64_t next_layer_id() noexcept;

class WeightSet {
  public:
    // Adds a zero-filled tensor whose random init has bound 1/sqrt(fan_in); returns its index.
    std::size_t add(const std::string& name, std::vector<Index> shape, Index fan_in,
                    DType dtype = DType::F32);
    // Fills every tensor uniformly in ±init_bound, deterministically for a seed.
    void init_random(std::uint64_t seed);
    std::size_t size() const { return tensors_.size(); }
    const Tensor& at(std::size_t i) const { return tensors_[i]; }
    Tensor& at(std::size_t i) { return tensors_[i]; }
    // Throws std::invalid_argument naming the known names when `name` is unknown.
    const Tensor& find(const std::string& name) const;
    Tensor& find(const std::string& name);
    std::vector<std::string> names() const;
    // The tensor as float32 (bfloat16 widened), into dst of numel() floats.
    static void copy_to_f32(const Tensor& t, float* dst);
    // Checks every view (known name, no duplicate, exact shape, finite values, and with
    // `strict` that every tensor is given) before copying anything: on a throw
    // (std::invalid_argument) the set is unchanged.
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
    // Uniform in ±1/sqrt(fan_in) per tensor (biases: of their matrix), as torch.nn.Linear;
    // deterministic for a seed, whatever the thread count.
    void init_random(std::uint64_t seed);
    // All or nothing (WeightSet::load).
    void load_weights(const std::vector<WeightView>& views, bool strict);

  protected:
    // dtype: the storage of the tensors added in the layer's weight dtype.
    explicit LayerWeights(DType dtype) : dtype_(dtype) {}
    std::shared_lock<std::shared_mutex> read_lock() const {
        return std::shared_lock<std::shared_mutex>(mutex_);
    }
    WeightSet weights_;

  private:
    DType dtype_;
    mutable std::shared_mutex mutex_;
};

}  // namespace moelab
