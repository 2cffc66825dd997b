// KvCache: one sequence's keys and values for one softmax-attention layer.
//
// Keys are stored after q/k-norm and RoPE, as the attention reads them: (slots, n_kv * d)
// token-major, keys and values apart. A full-attention layer keeps every token (slot = position);
// a sliding-window or chunked layer keeps only the last `window` tokens in a ring buffer
// (slot = position mod window), which is all its masks can reach. Positions continue from
// length(): the next token is at position length().
#pragma once

#include <cstdint>

#include "moelab/aligned.hpp"
#include "moelab/sequence_state.hpp"
#include "moelab/types.hpp"

namespace moelab {

class Attention;

class KvCache : public SequenceState {
  public:
    Index tokens_held() const;      // min(length, window) for a ring, else length
    // Bytes of the keys and values held: tokens_held() * 2 * n_kv * d * 4.
    std::size_t nbytes() const override;
    Index window() const { return window_; }  // ring size, 0 = keeps every token
    Index kv_dim() const { return kv_dim_; }
    // Copies out the keys and values of the tokens held, oldest first: (tokens_held(), n_kv d).
    void read(float* keys, float* values) const;
    void reset() override;  // empty, length 0

  private:
    friend class Attention;
class TokenMixer;
    KvCache(Index kv_dim, Index window, std::uint64_t owner);

    Index slot(Index position) const { return window_ > 0 ? position % window_ : position; }
    // Storage for positions up to new_length - 1 (std::bad_alloc; the contents stay).
    void reserve(Index new_length);
    // Stores T new tokens' rows (ld floats apart) at positions length() ..; length += T.
    void append(const float* k, const float* v, Index T, Index ld) noexcept;

    Index kv_dim_, window_;
    AlignedVector<float> keys_, values_;  // (slots, kv_dim)
};

}  // namespace moelab
