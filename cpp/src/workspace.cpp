#include "moelab/workspace.hpp"

namespace moelab {

Workspace& thread_workspace() noexcept {
    static thread_local Workspace workspace;
    return workspace;
}

}  // namespace moelab
