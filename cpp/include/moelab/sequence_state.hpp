// SequenceState: what every token mixer's per-sequence object (KvCache, MlaCache,
// DeltaNetState) holds: the id of the layer that made it (only that layer accepts it), the
// tokens seen, and the lock that lets one forward (or read) use it at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>

#include "moelab/types.hpp"

namespace moelab {

class TokenMixer;

class SequenceState {
  public:
    virtual ~SequenceState() = default;
    // Tokens seen since creation or reset: the position of the next token.
    Index length() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return length_;
    }
    std::uint64_t owner() const { return owner_; }  // the id of the layer that made it
    virtual std::size_t nbytes() const = 0;          // bytes held
    virtual void reset() = 0;                        // back to an empty sequence, length 0

  protected:
    explicit SequenceState(std::uint64_t owner) : owner_(owner) {}

    std::uint64_t owner_;
    Index length_ = 0;
    mutable std::mutex mutex_;  // one forward (or read) at a time

  private:
    friend class TokenMixer;  // begin_forward: checks the owner, takes the lock, reads the length
};

}  // namespace moelab
