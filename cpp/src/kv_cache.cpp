#include "moelab/kv_cache.hpp"

#include <algorithm>
#include <cstring>

namespace moelab {

KvCache::KvCache(Index kv_dim, Index window, std::uint64_t owner)
    : SequenceState(owner), kv_dim_(kv_dim), window_(window) {}

Index KvCache::tokens_held() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return window_ > 0 ? std::min(length_, window_) : length_;
}

std::size_t KvCache::nbytes() const {
    return std::size_t(tokens_held()) * std::size_t(2 * kv_dim_) * sizeof(float);
}

void KvCache::read(float* keys, float* values) const {
    std::lock_guard<std::mutex> lock(mutex_);
    const Index held = window_ > 0 ? std::min(length_, window_) : length_;
    for (Index i = 0; i < held; ++i) {
        const Index s = slot(length_ - held + i);
        std::memcpy(keys + i * kv_dim_, keys_.data() + s * kv_dim_, std::size_t(kv_dim_) * 4);
        std::memcpy(values + i * kv_dim_, values_.data() + s * kv_dim_, std::size_t(kv_dim_) * 4);
    }
}

void KvCache::reset() {
    std::lock_guard<std::mutex> lock(mutex_);
    length_ = 0;
    keys_ = AlignedVector<float>();
    values_ = AlignedVector<float>();
}

void KvCache::reserve(Index new_length) {
    const Index slots = window_ > 0 ? std::min(new_length, window_) : new_length;
    const std::size_t need = std::size_t(slots * kv_dim_);
    if (keys_.size() >= need) return;
    // geometric growth for a growing cache, so decoding token by token copies O(length) in all
    std::size_t grown = std::max(need, keys_.size() + keys_.size() / 2);
    if (window_ > 0) grown = std::min(grown, std::size_t(window_ * kv_dim_));
    AlignedVector<float> k(grown), v(grown);
    std::copy(keys_.begin(), keys_.end(), k.begin());
    std::copy(values_.begin(), values_.end(), v.begin());
    keys_.swap(k);
    values_.swap(v);
}

void KvCache::append(const float* k, const float* v, Index T, Index ld) noexcept {
    // a ring keeps only the last `window` of the new tokens
    const Index first = window_ > 0 ? std::max<Index>(0, T - window_) : 0;
    for (Index t = first; t < T; ++t) {
        const Index s = slot(length_ + t);
        std::memcpy(keys_.data() + s * kv_dim_, k + t * ld, std::size_t(kv_dim_) * sizeof(float));
        std::memcpy(values_.data() + s * kv_dim_, v + t * ld, std::size_t(kv_dim_) * sizeof(float));
    }
    length_ += T;
}

}  // namespace moelab
