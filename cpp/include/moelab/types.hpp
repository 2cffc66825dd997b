// Basic types shared by the core: indices, the weight dtype, and row-major Eigen maps over raw
// buffers.
#pragma once

#include <Eigen/Core>
#include <cstddef>
#include <cstdint>

namespace moelab {

using Index = std::ptrdiff_t;

// Storage type of the expert weights; all math is float32.
enum class DType { F32, BF16 };
using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
// A (rows, cols) row-major view with an explicit row stride (in elements).
using MatMap = Eigen::Map<RowMatrixXf, 0, Eigen::OuterStride<>>;
using ConstMatMap = Eigen::Map<const RowMatrixXf, 0, Eigen::OuterStride<>>;

}  // namespace moelab
