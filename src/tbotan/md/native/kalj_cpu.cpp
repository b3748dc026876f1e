// Native CPU kernels of the torch engine (C++17, parallelised with ATen's thread pool).
//
// Same data layout and semantics as the pure-torch kernels in torch_potential.py and
// torch_neighbors.py:
//   coords     (3, B, N)  positions, component-major, float64 or float32
//   neighbors  (B, N, K)  int64 flat indices b*N + j, valid entries first, padded with the
//                         particle's own flat index
//   counts     (B, N)     int64 number of valid entries per row (may exceed K on overflow)
//   types      (B, N)     int64, 0 = A, 1 = B
//   box        (B, 3)     edge lengths
//   table      (7, 4)     float64 rows c12, c6, r_cut^2, u(r_c), u'(r_c), r_c, sigma^2,
//                         columns indexed by the pair type 2 t_i + t_j
// Every reduction runs over one row in a fixed order, so results do not depend on the number
// of threads.  Neighbour rows are filled in the same order as the torch build (27-cell stencil
// in lexicographic offset order, particles of a cell by increasing index; all pairs by
// increasing index), so both builds give identical lists.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
// AVX2 force rows where the build targets AVX2 but not AVX-512 (x86-64-v3: AMD Zen 1-3,
// Intel Haswell to Alder Lake)
#if defined(__AVX2__) && !defined(__AVX512F__)
#define TBOTAN_AVX2_ROWS 1
#endif

#include <algorithm>
#include <atomic>
#include <type_traits>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

namespace {

constexpr int64_t kGrain = 512;  // rows per task: small systems run on one thread
// Particles per task of the element-wise passes (the velocity-Verlet kicks and drift): below
// it they run on one thread.  A pass over a batch of 48 x 400 particles takes tens of
// microseconds; a fork-join of the thread pool costs more than that where the machine is
// shared (each one waits for the slowest thread), so only large batches split them.
constexpr int64_t kElementwiseGrain = 1 << 17;
constexpr int kLanes = 8;        // neighbours per vectorised block of the half-list force loop

struct PairTable {
  double c12[4], c6[4], rc2[4], ucut[4], ducut[4], rcut[4], sig2[4];
};

PairTable read_table(const torch::Tensor& table) {
  TORCH_CHECK(table.dim() == 2 && table.size(0) == 7 && table.size(1) == 4,
              "pair table must have shape (7, 4)");
  auto t = table.to(torch::kFloat64).contiguous();
  const double* p = t.data_ptr<double>();
  PairTable out;
  for (int k = 0; k < 4; ++k) {
    out.c12[k] = p[0 * 4 + k];
    out.c6[k] = p[1 * 4 + k];
    out.rc2[k] = p[2 * 4 + k];
    out.ucut[k] = p[3 * 4 + k];
    out.ducut[k] = p[4 * 4 + k];
    out.rcut[k] = p[5 * 4 + k];
    out.sig2[k] = p[6 * 4 + k];
  }
  return out;
}

void check_layout(const torch::Tensor& coords, const torch::Tensor& neighbors,
                  const torch::Tensor& counts, const torch::Tensor& types,
                  const torch::Tensor& box) {
  TORCH_CHECK(coords.device().is_cpu(), "native kernels run on the CPU");
  TORCH_CHECK(coords.dim() == 3 && coords.size(0) == 3, "coords must be (3, B, N)");
  TORCH_CHECK(coords.is_contiguous() && neighbors.is_contiguous() && counts.is_contiguous() &&
                  types.is_contiguous() && box.is_contiguous(),
              "native kernels need contiguous tensors");
  const auto B = coords.size(1), N = coords.size(2);
  TORCH_CHECK(neighbors.dim() == 3 && neighbors.size(0) == B && neighbors.size(1) == N,
              "neighbors must be (B, N, K)");
  TORCH_CHECK(neighbors.scalar_type() == torch::kInt64 && counts.scalar_type() == torch::kInt64 &&
                  types.scalar_type() == torch::kInt64,
              "neighbors, counts and types must be int64");
  TORCH_CHECK(counts.numel() == B * N && types.numel() == B * N, "counts/types must be (B, N)");
  TORCH_CHECK(box.scalar_type() == coords.scalar_type() && box.numel() == 3 * B,
              "box must be (B, 3) with the dtype of coords");
}

// Forces (and optionally energies, virial and closest approach) over the valid entries of
// every neighbour row.
template <typename T>
void pair_kernel(const T* c, const int64_t* nbr, const int64_t* cnt, const int64_t* types,
                 const T* box, const PairTable& tab, int64_t B, int64_t N, int64_t K, T* f,
                 T* energy, double* virial_row, double* min_ratio_sq_row) {
  const int64_t BN = B * N;
  const T* x = c;
  const T* y = c + BN;
  const T* z = c + 2 * BN;
  T c12[4], c6[4], rc2[4], ducut[4], ucut[4], rcut[4];
  for (int k = 0; k < 4; ++k) {
    c12[k] = T(tab.c12[k]);
    c6[k] = T(tab.c6[k]);
    rc2[k] = T(tab.rc2[k]);
    ducut[k] = T(tab.ducut[k]);
    ucut[k] = T(tab.ucut[k]);
    rcut[k] = T(tab.rcut[k]);
  }
  at::parallel_for(0, BN, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / N;
      const T Lx = box[3 * b], Ly = box[3 * b + 1], Lz = box[3 * b + 2];
      const T iLx = T(1) / Lx, iLy = T(1) / Ly, iLz = T(1) / Lz;
      const T xi = x[row], yi = y[row], zi = z[row];
      const int64_t ti2 = 2 * types[row];
      const int64_t n = std::min(cnt[row], K);
      const int64_t* nb = nbr + row * K;
      T ax = 0, ay = 0, az = 0;
      if (energy == nullptr) {
#pragma omp simd reduction(+ : ax, ay, az)
        for (int64_t k = 0; k < n; ++k) {
          const int64_t j = nb[k];
          T dx = xi - x[j], dy = yi - y[j], dz = zi - z[j];
          dx -= Lx * std::nearbyint(dx * iLx);
          dy -= Ly * std::nearbyint(dy * iLy);
          dz -= Lz * std::nearbyint(dz * iLz);
          const T r2 = dx * dx + dy * dy + dz * dz;
          const int64_t p = ti2 + types[j];
          const bool inside = r2 < rc2[p];
          const T r2s = inside ? r2 : T(1);
          const T ir = T(1) / std::sqrt(r2s);
          const T ir2 = ir * ir, ir6 = ir2 * ir2 * ir2;
          T fr = (T(12) * c12[p] * ir6 * ir6 - T(6) * c6[p] * ir6) * ir2 + ducut[p] * ir;
          fr = inside ? fr : T(0);
          ax += fr * dx;
          ay += fr * dy;
          az += fr * dz;
        }
      } else {
        T e = 0;
        double w = 0;
        double rmin = std::numeric_limits<double>::infinity();
        for (int64_t k = 0; k < n; ++k) {
          const int64_t j = nb[k];
          T dx = xi - x[j], dy = yi - y[j], dz = zi - z[j];
          dx -= Lx * std::nearbyint(dx * iLx);
          dy -= Ly * std::nearbyint(dy * iLy);
          dz -= Lz * std::nearbyint(dz * iLz);
          const T r2 = dx * dx + dy * dy + dz * dz;
          const int64_t p = ti2 + types[j];
          rmin = std::min(rmin, double(r2) / tab.sig2[p]);
          if (!(r2 < rc2[p])) continue;
          const T ir = T(1) / std::sqrt(r2);
          const T ir2 = ir * ir, ir6 = ir2 * ir2 * ir2;
          const T fr = (T(12) * c12[p] * ir6 * ir6 - T(6) * c6[p] * ir6) * ir2 + ducut[p] * ir;
          ax += fr * dx;
          ay += fr * dy;
          az += fr * dz;
          const T r = r2 * ir;
          e += c12[p] * ir6 * ir6 - c6[p] * ir6 - ucut[p] - (r - rcut[p]) * ducut[p];
          w += double(fr * r2);
        }
        energy[row] = T(0.5) * e;
        virial_row[row] = 0.5 * w;
        min_ratio_sq_row[row] = rmin;
      }
      f[row] = ax;
      f[BN + row] = ay;
      f[2 * BN + row] = az;
    }
  });
}

torch::Tensor forces(torch::Tensor coords, torch::Tensor neighbors, torch::Tensor counts,
                     torch::Tensor types, torch::Tensor box, torch::Tensor table) {
  check_layout(coords, neighbors, counts, types, box);
  const auto tab = read_table(table);
  const auto B = coords.size(1), N = coords.size(2), K = neighbors.size(2);
  auto out = torch::empty_like(coords);
  AT_DISPATCH_FLOATING_TYPES(coords.scalar_type(), "kalj_forces", [&] {
    pair_kernel<scalar_t>(coords.data_ptr<scalar_t>(), neighbors.data_ptr<int64_t>(),
                          counts.data_ptr<int64_t>(), types.data_ptr<int64_t>(),
                          box.data_ptr<scalar_t>(), tab, B, N, K, out.data_ptr<scalar_t>(),
                          nullptr, nullptr, nullptr);
  });
  return out;
}

std::vector<torch::Tensor> energy_virial(torch::Tensor coords, torch::Tensor neighbors,
                                         torch::Tensor counts, torch::Tensor types,
                                         torch::Tensor box, torch::Tensor table) {
  check_layout(coords, neighbors, counts, types, box);
  const auto tab = read_table(table);
  const auto B = coords.size(1), N = coords.size(2), K = neighbors.size(2);
  auto f = torch::empty_like(coords);
  auto energy = torch::empty({B, N}, coords.options());
  auto dopts = coords.options().dtype(torch::kFloat64);
  auto virial_row = torch::empty({B, N}, dopts);
  auto min_row = torch::empty({B, N}, dopts);
  AT_DISPATCH_FLOATING_TYPES(coords.scalar_type(), "kalj_energy_virial", [&] {
    pair_kernel<scalar_t>(coords.data_ptr<scalar_t>(), neighbors.data_ptr<int64_t>(),
                          counts.data_ptr<int64_t>(), types.data_ptr<int64_t>(),
                          box.data_ptr<scalar_t>(), tab, B, N, K, f.data_ptr<scalar_t>(),
                          energy.data_ptr<scalar_t>(), virial_row.data_ptr<double>(),
                          min_row.data_ptr<double>());
  });
  // per-system reductions in a fixed (serial) order: independent of the thread count
  auto virial = torch::empty({B}, dopts);
  auto min_ratio = torch::empty({B}, dopts);
  const double* vr = virial_row.data_ptr<double>();
  const double* mr = min_row.data_ptr<double>();
  for (int64_t b = 0; b < B; ++b) {
    double w = 0, m = std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < N; ++i) {
      w += vr[b * N + i];
      m = std::min(m, mr[b * N + i]);
    }
    virial.data_ptr<double>()[b] = w;
    min_ratio.data_ptr<double>()[b] = std::sqrt(m);
  }
  return {f, energy, virial.to(coords.scalar_type()), min_ratio.to(coords.scalar_type())};
}

// Dense neighbour lists from a cell list (cells of edge >= the largest list radius, 27-cell
// stencil) or, with fewer than three cells per edge, from all pairs.
template <typename T>
void build_kernel(const T* c, const int64_t* types, const T* box, const double* list_sq,
                  double r_max, int64_t B, int64_t N, int64_t K, int64_t* nbr, int64_t* cnt) {
  const int64_t BN = B * N;
  const T* x = c;
  const T* y = c + BN;
  const T* z = c + 2 * BN;
  // the same number of cells for every system (as the torch build): from the smallest box
  int64_t nc[3];
  for (int d = 0; d < 3; ++d) {
    T smallest = box[d];
    for (int64_t b = 1; b < B; ++b) smallest = std::min(smallest, box[3 * b + d]);
    nc[d] = static_cast<int64_t>(std::floor(double(smallest) / r_max));
  }
  const bool use_cells = nc[0] >= 3 && nc[1] >= 3 && nc[2] >= 3;
  const int64_t n_cells = use_cells ? nc[0] * nc[1] * nc[2] : 1;
  std::vector<int64_t> cell_of(BN), start(B * n_cells + 1, 0), members(BN);
  if (use_cells) {
    for (int64_t b = 0; b < B; ++b) {
      const T* L = box + 3 * b;
      const T size[3] = {L[0] / T(nc[0]), L[1] / T(nc[1]), L[2] / T(nc[2])};
      for (int64_t i = 0; i < N; ++i) {
        const int64_t row = b * N + i;
        const T pos[3] = {x[row], y[row], z[row]};
        int64_t cc[3];
        for (int d = 0; d < 3; ++d) {
          int64_t v = static_cast<int64_t>(std::floor(pos[d] / size[d]));
          cc[d] = std::min(std::max<int64_t>(v, 0), nc[d] - 1);
        }
        cell_of[row] = (cc[0] * nc[1] + cc[1]) * nc[2] + cc[2] + b * n_cells;
        start[cell_of[row] + 1] += 1;
      }
    }
    for (int64_t k = 0; k < B * n_cells; ++k) start[k + 1] += start[k];
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t row = 0; row < BN; ++row) members[fill[cell_of[row]]++] = row;  // stable
  }
  at::parallel_for(0, BN, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / N;
      const T Lx = box[3 * b], Ly = box[3 * b + 1], Lz = box[3 * b + 2];
      const T xi = x[row], yi = y[row], zi = z[row];
      const int64_t ti2 = 2 * types[row];
      int64_t* out = nbr + row * K;
      int64_t n = 0;
      // candidate j seen at (x_j + sx, y_j + sy, z_j + sz): with cells of edge >= the list
      // radius, a pair inside the radius has exactly one image that close, so the stencil's
      // image shift gives the minimum-image separation without rounding.
      auto consider = [&](int64_t j, T sx, T sy, T sz) {
        if (j == row) return;
        const T dx = xi - (x[j] + sx), dy = yi - (y[j] + sy), dz = zi - (z[j] + sz);
        const T r2 = dx * dx + dy * dy + dz * dz;
        if (r2 < T(list_sq[ti2 + types[j]])) {
          if (n < K) out[n] = j;
          ++n;
        }
      };
      if (use_cells) {
        const int64_t own = cell_of[row] - b * n_cells;
        const int64_t cz = own % nc[2], cy = (own / nc[2]) % nc[1], cx = own / (nc[1] * nc[2]);
        auto wrap = [](int64_t v, int64_t n_c, T length, T& shift) {
          shift = v < 0 ? -length : (v >= n_c ? length : T(0));
          return v < 0 ? v + n_c : (v >= n_c ? v - n_c : v);
        };
        for (int a = -1; a <= 1; ++a) {
          T shx;
          const int64_t sx = wrap(cx + a, nc[0], Lx, shx);
          for (int e = -1; e <= 1; ++e) {
            T shy;
            const int64_t sy = wrap(cy + e, nc[1], Ly, shy);
            for (int g = -1; g <= 1; ++g) {
              T shz;
              const int64_t sz = wrap(cz + g, nc[2], Lz, shz);
              const int64_t cell = (sx * nc[1] + sy) * nc[2] + sz + b * n_cells;
              for (int64_t m = start[cell]; m < start[cell + 1]; ++m)
                consider(members[m], shx, shy, shz);
            }
          }
        }
      } else {
        for (int64_t j = b * N; j < (b + 1) * N; ++j) {
          const T sx = Lx * std::nearbyint((xi - x[j]) / Lx);
          const T sy = Ly * std::nearbyint((yi - y[j]) / Ly);
          const T sz = Lz * std::nearbyint((zi - z[j]) / Lz);
          consider(j, sx, sy, sz);
        }
      }
      cnt[row] = n;
      for (int64_t k = std::min(n, K); k < K; ++k) out[k] = row;
    }
  });
}

std::vector<torch::Tensor> build_neighbors(torch::Tensor coords, torch::Tensor types,
                                           torch::Tensor box, torch::Tensor list_sq,
                                           double r_max, int64_t capacity) {
  TORCH_CHECK(coords.device().is_cpu() && coords.dim() == 3 && coords.size(0) == 3,
              "coords must be a CPU tensor (3, B, N)");
  TORCH_CHECK(capacity > 0, "capacity must be positive");
  auto c = coords.contiguous();
  auto t = types.contiguous();
  auto bx = box.contiguous();
  auto lsq = list_sq.to(torch::kFloat64).contiguous();
  const auto B = c.size(1), N = c.size(2);
  TORCH_CHECK(t.scalar_type() == torch::kInt64 && t.numel() == B * N, "types must be int64 (B, N)");
  auto opts = torch::TensorOptions().dtype(torch::kInt64);
  auto nbr = torch::empty({B, N, capacity}, opts);
  auto cnt = torch::empty({B, N}, opts);
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "kalj_build_neighbors", [&] {
    build_kernel<scalar_t>(c.data_ptr<scalar_t>(), t.data_ptr<int64_t>(),
                           bx.data_ptr<scalar_t>(), lsq.data_ptr<double>(), r_max, B, N, capacity,
                           nbr.data_ptr<int64_t>(), cnt.data_ptr<int64_t>());
  });
  return {nbr, cnt};
}

// First half of velocity Verlet, in place, and the neighbour-list check:
// v += dt/2 F; r += dt v; returns (B,) bool "some particle moved more than sqrt(threshold_sq)
// from the reference positions".
torch::Tensor kick_drift_check(torch::Tensor coords, torch::Tensor velocities,
                               torch::Tensor forces, torch::Tensor reference, torch::Tensor dt,
                               double threshold_sq) {
  TORCH_CHECK(coords.is_contiguous() && velocities.is_contiguous() && forces.is_contiguous() &&
                  reference.is_contiguous() && dt.is_contiguous(),
              "kick_drift_check needs contiguous tensors");
  const auto B = coords.size(1), N = coords.size(2), BN = B * N;
  auto row_max = torch::empty({B, N}, coords.options().dtype(torch::kFloat64));
  AT_DISPATCH_FLOATING_TYPES(coords.scalar_type(), "kalj_kick_drift", [&] {
    scalar_t* r = coords.data_ptr<scalar_t>();
    scalar_t* v = velocities.data_ptr<scalar_t>();
    const scalar_t* f = forces.data_ptr<scalar_t>();
    const scalar_t* ref = reference.data_ptr<scalar_t>();
    const scalar_t* h = dt.data_ptr<scalar_t>();
    double* m = row_max.data_ptr<double>();
    at::parallel_for(0, BN, kElementwiseGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const scalar_t step = h[i / N];
        double d2 = 0;
        for (int d = 0; d < 3; ++d) {
          const int64_t k = d * BN + i;
          v[k] += scalar_t(0.5) * step * f[k];
          r[k] += step * v[k];
          const double delta = double(r[k] - ref[k]);
          d2 += delta * delta;
        }
        m[i] = d2;
      }
    });
  });
  auto moved = torch::empty({B}, torch::TensorOptions().dtype(torch::kBool));
  const double* m = row_max.data_ptr<double>();
  for (int64_t b = 0; b < B; ++b) {
    double worst = 0;
    for (int64_t i = 0; i < N; ++i) worst = std::max(worst, m[b * N + i]);
    moved.data_ptr<bool>()[b] = worst > threshold_sq;
  }
  return moved;
}

// ---------------------------------------------------------------------------- half lists
//
// Half neighbour lists: every pair {i, j} within its list radius appears once, in the row of
// its owner, and the force kernels apply Newton's third law (the pair's force is added to i
// and subtracted from j).  The builds bin particles into cells of edge >= r_max / 2 (stencil
// of 5^3 cells) when every box edge holds at least five of them, else of edge >= r_max (3^3
// cells), and visit only the forward half of the stencil: i owns {i, j} if j's cell lies at a
// lexicographically positive stencil offset from i's, or in i's own cell with j > i.  Boxes
// with fewer than three cells per edge use all pairs and an index rule that splits each row
// about evenly: i owns {i, j} if i < j when i + j is odd, and if i > j when i + j is even.
// Ownership uses indices within the system, never within the batch.
// Each row holds its A neighbours first (slots [0, nA)) and its B neighbours after them
// (slots [nA, n)), so that the pair coefficients are constant over each segment:
//   neighbors  (B, N, K)  int32 flat indices, padded with the row's own index
//   counts     (B, N, 2)  int32 [n, nA] (n may exceed K on overflow; nA counts stored A
//                         neighbours of rows that did not overflow)
// int32 (HalfIndex), not the int64 of the full lists: half the memory the force loop streams
// through; a batch's flat indices and spare rows must stay below 2^31 (check_half_size).
// The forces are accumulated without races and in a fixed order: the rows of each system are
// cut into chunks of a size fixed by N (not by the thread count); each chunk accumulates into
// a buffer of its own, and a particle's force is the sum of the chunks' buffers in chunk
// order.  Results are thus independent of the thread count and equal for a system alone and
// inside a batch; they equal the full-list results to rounding (another summation order).

// task(k) for k in [0, n), whole tasks handed out one at a time to the threads as they come
// free (an atomic counter) instead of in equal shares fixed in advance: where other processes
// share the cores, a thread that lost its core for a while no longer holds the batch up with
// its share still to do.  Which thread runs a task changes nothing in its results.
using HalfIndex = int32_t;  // entries of the half lists' neighbors and counts

// Half lists index a batch of B systems of N particles (flat indices b N + j, and kLanes spare
// rows past a system's last particle in the force loops) with HalfIndex.
void check_half_size(int64_t B, int64_t N) {
  TORCH_CHECK(B * N + kLanes <= std::numeric_limits<HalfIndex>::max(),
              "half neighbour lists index a batch with int32: B * N = ", B * N,
              " particles is too many (split the batch)");
  // the vectorised force loops gather a system's padded (x, y, z, pad) rows with 32-bit
  // element offsets 4 j, j < N + kLanes
  TORCH_CHECK(4 * (N + kLanes) <= std::numeric_limits<HalfIndex>::max(),
              "half neighbour lists: N = ", N, " particles in one system is too many");
}

template <typename Task>
void parallel_tasks(int64_t n, const Task& task) {
  if (n <= 1 || at::get_num_threads() <= 1 || at::in_parallel_region()) {
    for (int64_t k = 0; k < n; ++k) task(k);
    return;
  }
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), n);
  at::parallel_for(0, workers, 1, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end; ++w)
      for (int64_t k = next.fetch_add(1); k < n; k = next.fetch_add(1)) task(k);
  });
}

// The explicitly vectorised loops (AVX-512, where the build targets it) can be switched off
// at run time (``use_simd(False)``) to compare them with the portable loops in one build; a
// kernel call reads the switch once (a system's build once), so flip it between calls.
std::atomic<bool> simd_on{true};

int64_t half_chunk_rows(int64_t N) {
  // at least 2048 rows per chunk (each chunk's buffer spans the whole system: fewer, larger
  // chunks move less memory), at most 8 chunks per system: a function of N only
  return std::max<int64_t>(2048, (N + 7) / 8);
}

// Whether the AVX-512 loops run for scalar type T: float64 only, in builds targeting AVX-512,
// with the run-time switch on.
template <typename T>
bool simd_loops_for() {
#if defined(__AVX512F__) || defined(TBOTAN_AVX2_ROWS)
  return std::is_same_v<T, double> && simd_on.load(std::memory_order_relaxed);
#else
  return false;
#endif
}

constexpr int64_t kSimdSlack = 8;  // spare slots past K for the vectorised list appends

// Rows ahead of the one being computed whose neighbour entries are prefetched.  A row's
// valid entries (about 46 at the KALJ density: three cache lines of int32) sit at a stride of K
// entries from the previous row's: the hardware prefetchers miss them, and before this the
// load of a row's first indices was the force loop's hottest instruction (a cache miss per
// row; perf, N = 400, batch 48).  Prefetching changes no result.
constexpr int64_t kPrefetchRows = 2;

// Prefetch the valid neighbour entries of half-list row ``row`` into the L1 cache.
inline void prefetch_half_row(const HalfIndex* nbr, const HalfIndex* cnt, int64_t row,
                              int64_t K) {
  const int64_t n = std::min<int64_t>(cnt[2 * row], K);
  const char* p = reinterpret_cast<const char*>(nbr + row * K);
  for (int64_t byte = 0; byte < n * int64_t(sizeof(HalfIndex)); byte += 64) {
#if defined(__x86_64__)
    // as an instruction: GCC 12 dropped __builtin_prefetch from this file's loops
    asm volatile("prefetcht0 %0" : : "m"(*(p + byte)));
#else
    __builtin_prefetch(p + byte, 0, 3);
#endif
  }
}

// Prefetch rows [first, first + kPrefetchRows) at the start of a chunk, then, at row li, row
// li + kPrefetchRows (rows of the chunk only).
inline void prefetch_ahead(const HalfIndex* nbr, const HalfIndex* cnt, int64_t base, int64_t li,
                           int64_t first, int64_t last, int64_t K) {
  if (li == first)
    for (int64_t r = first + 1; r < std::min(last, first + kPrefetchRows); ++r)
      prefetch_half_row(nbr, cnt, base + r, K);
  if (li + kPrefetchRows < last) prefetch_half_row(nbr, cnt, base + li + kPrefetchRows, K);
}

#if defined(__AVX512F__)
// The first ``left`` of eight lanes (all eight for left >= 8).
inline __mmask8 first_lanes(int64_t left) {
  return left >= 8 ? __mmask8(0xFF) : __mmask8((1u << left) - 1u);
}

// r^2 = (dx^2 + dy^2) + dz^2, rounded in the order of the scalar loops (no fused multiply-adds)
inline __m512d squared_norm(__m512d dx, __m512d dy, __m512d dz) {
  return _mm512_add_pd(_mm512_add_pd(_mm512_mul_pd(dx, dx), _mm512_mul_pd(dy, dy)),
                       _mm512_mul_pd(dz, dz));
}

// Candidates members[lo, hi) of one row, at (sx, sy, sz)[m], seen from (px, py, pz) = the row's
// position minus the run's periodic shift: those inside their list radius lim[type] are
// appended, in member order, A neighbours to ``out`` and B neighbours to ``b_side`` (counts na,
// nb; entries past K are counted but not stored; both arrays have kSimdSlack spare slots).
inline void append_run_avx512(int64_t lo, int64_t hi, double px, double py, double pz,
                              const double* lim, const double* sx, const double* sy,
                              const double* sz, const int64_t* st, const HalfIndex* members,
                              HalfIndex* out, HalfIndex* b_side, int64_t K, int64_t& na,
                              int64_t& nb) {
  const __m512d vx = _mm512_set1_pd(px), vy = _mm512_set1_pd(py), vz = _mm512_set1_pd(pz);
  const __m512d limA = _mm512_set1_pd(lim[0]), limB = _mm512_set1_pd(lim[1]);
  const __m512i zero = _mm512_setzero_si512();
  for (int64_t m = lo; m < hi; m += 8) {
    const __mmask8 valid = first_lanes(hi - m);
    const __m512d dx = _mm512_sub_pd(vx, _mm512_maskz_loadu_pd(valid, sx + m));
    const __m512d dy = _mm512_sub_pd(vy, _mm512_maskz_loadu_pd(valid, sy + m));
    const __m512d dz = _mm512_sub_pd(vz, _mm512_maskz_loadu_pd(valid, sz + m));
    const __m512d r2 = squared_norm(dx, dy, dz);
    const __mmask8 is_b =
        _mm512_mask_cmpneq_epi64_mask(valid, _mm512_maskz_loadu_epi64(valid, st + m), zero);
    const __m512d limit = _mm512_mask_blend_pd(is_b, limA, limB);
    // r2 < limit, as the scalar loop's !(r2 < lim) test
    const __mmask8 keep = _mm512_mask_cmp_pd_mask(valid, r2, limit, _CMP_LT_OQ);
    // branch-free appends (whether a candidate is kept is not predictable): both sides are
    // stored every time, and the counts advance by the number kept.  The eight int32 indices
    // sit in the low half of j; a compress of the low eight lanes stays in the low half.
    const __m512i j = _mm512_maskz_loadu_epi32(valid, members + m);
    const __mmask8 keep_a = keep & static_cast<__mmask8>(~is_b), keep_b = keep & is_b;
    if (na <= K)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + na),
                          _mm512_castsi512_si256(_mm512_maskz_compress_epi32(keep_a, j)));
    if (nb <= K)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(b_side + nb),
                          _mm512_castsi512_si256(_mm512_maskz_compress_epi32(keep_b, j)));
    na += __builtin_popcount(keep_a);
    nb += __builtin_popcount(keep_b);
  }
}
#endif

// Candidates k in [0, count) of one row, at (xs, ys, zs)[k] seen from (px, py, pz) (the row's
// position minus the candidates' periodic shift; with ``wrap``, minimum image in the box L
// instead), B particles where ts[k] != 0, neighbour index j_of(k): those inside their list
// radius lim[type] are appended, in k order, A neighbours to ``to_a`` and B neighbours to
// ``to_b`` (counts na, nb; entries past K are counted but not stored: both arrays have a spare
// slot at K).  The distances go to ``kept`` flags first, in a loop the compiler vectorises, and
// the appends are branch-free (whether a candidate is kept is not predictable).
template <bool wrap, typename T, typename TypeT, typename JOf>
inline void append_candidates(int64_t count, const T* xs, const T* ys, const T* zs,
                              const TypeT* ts, T px, T py, T pz, const T* L, const T* lim,
                              JOf j_of, uint8_t* kept, HalfIndex* to_a, HalfIndex* to_b,
                              int64_t K, int64_t& na, int64_t& nb) {
  const T Lx = L[0], Ly = L[1], Lz = L[2];
  const T iLx = T(1) / Lx, iLy = T(1) / Ly, iLz = T(1) / Lz;
  const T limA = lim[0], limB = lim[1];
#pragma omp simd
  for (int64_t k = 0; k < count; ++k) {
    T dx = px - xs[k], dy = py - ys[k], dz = pz - zs[k];
    if constexpr (wrap) {
      dx -= Lx * std::nearbyint(dx * iLx);
      dy -= Ly * std::nearbyint(dy * iLy);
      dz -= Lz * std::nearbyint(dz * iLz);
    }
    const T r2 = dx * dx + dy * dy + dz * dz;
    kept[k] = r2 < (ts[k] != TypeT(0) ? limB : limA);
  }
  int64_t n_a = na, n_b = nb;  // locals: stores through to_a/to_b would force reloads
  for (int64_t k = 0; k < count; ++k) {
    const HalfIndex j = static_cast<HalfIndex>(j_of(k));
    const int64_t is_b = ts[k] != TypeT(0), keep = kept[k];
    to_a[std::min(n_a, K)] = j;
    to_b[std::min(n_b, K)] = j;
    n_a += keep & (1 - is_b);
    n_b += keep & is_b;
  }
  na = n_a;
  nb = n_b;
}

#if defined(__AVX2__)
// _mm_shuffle_epi8 controls that left-pack the int32 lanes of a 4-bit mask, in lane order
// (the other bytes zero).
struct PackTable {
  alignas(16) int8_t control[16][16];
  PackTable() {
    for (int mask = 0; mask < 16; ++mask) {
      int kept = 0;
      for (int lane = 0; lane < 4; ++lane)
        if ((mask >> lane) & 1) {
          for (int byte = 0; byte < 4; ++byte)
            control[mask][4 * kept + byte] = static_cast<int8_t>(4 * lane + byte);
          ++kept;
        }
      for (int byte = 4 * kept; byte < 16; ++byte) control[mask][byte] = int8_t(-128);
    }
  }
};
const PackTable kPackTable;

// The int32 lanes of j selected by ``mask`` (bit l: lane l), moved to the front in lane order.
inline __m128i pack_lanes(__m128i j, int mask) {
  return _mm_shuffle_epi8(
      j, _mm_load_si128(reinterpret_cast<const __m128i*>(kPackTable.control[mask])));
}

// AVX2 version of append_candidates for float64, four candidates per step: the same distances
// (the same operations in the same order, no fused multiply-adds), the same comparisons, the
// kept indices left-packed in candidate order and stored four at a time (to_a and to_b have
// kSimdSlack spare slots past K; entries past K are counted, not kept): entry for entry the
// portable lists.  ``j_of4(k, valid)`` gives the int32 indices of candidates k..k+3 (lanes
// past ``count``, where valid is 0, are never kept); loads past ``count`` are masked.
template <bool wrap, typename TypeT, typename JOf4>
inline void append_candidates_avx2(int64_t count, const double* xs, const double* ys,
                                   const double* zs, const TypeT* ts, double px, double py,
                                   double pz, const double* L, const double* lim, JOf4 j_of4,
                                   HalfIndex* to_a, HalfIndex* to_b, int64_t K, int64_t& na,
                                   int64_t& nb) {
  const __m256d vx = _mm256_set1_pd(px), vy = _mm256_set1_pd(py), vz = _mm256_set1_pd(pz);
  const __m256d vLx = _mm256_set1_pd(L[0]), vLy = _mm256_set1_pd(L[1]),
                vLz = _mm256_set1_pd(L[2]);
  const __m256d viLx = _mm256_set1_pd(1.0 / L[0]), viLy = _mm256_set1_pd(1.0 / L[1]),
                viLz = _mm256_set1_pd(1.0 / L[2]);
  const __m256d limA = _mm256_set1_pd(lim[0]), limB = _mm256_set1_pd(lim[1]);
  const __m256i lanes = _mm256_setr_epi64x(0, 1, 2, 3);
  int64_t n_a = na, n_b = nb;
  for (int64_t k = 0; k < count; k += 4) {
    const __m256i valid = _mm256_cmpgt_epi64(_mm256_set1_epi64x(count - k), lanes);
    __m256d dx = _mm256_sub_pd(vx, _mm256_maskload_pd(xs + k, valid));
    __m256d dy = _mm256_sub_pd(vy, _mm256_maskload_pd(ys + k, valid));
    __m256d dz = _mm256_sub_pd(vz, _mm256_maskload_pd(zs + k, valid));
    if constexpr (wrap) {  // d -= L nearbyint(d / L), as the portable loop
      auto image = [](__m256d d, __m256d length, __m256d inverse) {
        constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;  // as nearbyint
        return _mm256_sub_pd(
            d, _mm256_mul_pd(length, _mm256_round_pd(_mm256_mul_pd(d, inverse), kRound)));
      };
      dx = image(dx, vLx, viLx);
      dy = image(dy, vLy, viLy);
      dz = image(dz, vLz, viLz);
    }
    const __m256d r2 = _mm256_add_pd(
        _mm256_add_pd(_mm256_mul_pd(dx, dx), _mm256_mul_pd(dy, dy)), _mm256_mul_pd(dz, dz));
    __m256d is_b;  // ts[k] != 0
    if constexpr (std::is_same_v<TypeT, double>) {
      is_b = _mm256_cmp_pd(_mm256_maskload_pd(ts + k, valid), _mm256_setzero_pd(), _CMP_NEQ_UQ);
    } else {
      static_assert(sizeof(TypeT) == 8, "int64 types");
      const __m256i t =
          _mm256_maskload_epi64(reinterpret_cast<const long long*>(ts + k), valid);
      is_b = _mm256_castsi256_pd(_mm256_xor_si256(
          _mm256_cmpeq_epi64(t, _mm256_setzero_si256()), _mm256_set1_epi64x(-1)));
    }
    const __m256d keep = _mm256_and_pd(
        _mm256_castsi256_pd(valid),
        _mm256_cmp_pd(r2, _mm256_blendv_pd(limA, limB, is_b), _CMP_LT_OQ));
    const int keep_bits = _mm256_movemask_pd(keep), b_bits = _mm256_movemask_pd(is_b);
    const int keep_a = keep_bits & ~b_bits, keep_b = keep_bits & b_bits;
    const __m128i j = j_of4(k, valid);
    if (n_a <= K)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(to_a + n_a), pack_lanes(j, keep_a));
    if (n_b <= K)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(to_b + n_b), pack_lanes(j, keep_b));
    n_a += __builtin_popcount(keep_a);
    n_b += __builtin_popcount(keep_b);
  }
  na = n_a;
  nb = n_b;
}

// The int32 lanes of a 64-bit lane mask (AVX2 has no narrowing move): lanes 0, 2, 4, 6.
inline __m128i narrow_mask(__m256i valid) {
  const __m256i picked =
      _mm256_permutevar8x32_epi32(valid, _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0));
  return _mm256_castsi256_si128(picked);
}
#endif

template <typename T>
void build_half_kernel(const T* x, const T* y, const T* z, const int64_t* types, const T* box,
                       const double* list_sq, double r_max, int64_t N, int64_t K, int64_t offset,
                       HalfIndex* nbr, HalfIndex* cnt) {
  // one system: x, y, z, types (N,), box (3,), rows nbr (N, K) and cnt (N, 2); neighbour
  // entries are written as flat indices offset + j (the candidates carry them: each row is
  // copied into nbr as it stands).  The cells follow from this system's box alone, so a
  // system's list is the same alone and inside any batch.
  constexpr int64_t B = 1;
  const int64_t BN = N;
  int64_t nc[3], fine[3];
  for (int d = 0; d < 3; ++d) {
    T smallest = box[d];
    for (int64_t b = 1; b < B; ++b) smallest = std::min(smallest, box[3 * b + d]);
    nc[d] = static_cast<int64_t>(std::floor(double(smallest) / r_max));
    fine[d] = static_cast<int64_t>(std::floor(double(smallest) / (0.5 * r_max)));
  }
  int reach = 0;  // stencil offsets -reach..reach per axis; 0: all pairs
  if (fine[0] >= 5 && fine[1] >= 5 && fine[2] >= 5) {
    reach = 2;
    for (int d = 0; d < 3; ++d) nc[d] = fine[d];
  } else if (nc[0] >= 3 && nc[1] >= 3 && nc[2] >= 3) {
    reach = 1;
  }
  const bool use_cells = reach > 0;
  if (!use_cells) nc[0] = nc[1] = nc[2] = 1;
  const int64_t n_cells = nc[0] * nc[1] * nc[2];
  std::vector<int64_t> cell_of(BN), start(B * n_cells + 1, 0);
  // particles in cell order (as flat indices offset + j), with their coordinates and types
  // copied contiguously so that the candidate loops stream through memory
  std::vector<HalfIndex> members(BN);
  std::vector<int64_t> slot(BN);
  std::vector<T> sx(BN), sy(BN), sz(BN);
  std::vector<int64_t> st(BN);
  for (int64_t b = 0; b < B; ++b) {
    const T* L = box + 3 * b;
    const T size[3] = {L[0] / T(nc[0]), L[1] / T(nc[1]), L[2] / T(nc[2])};
    for (int64_t i = 0; i < N; ++i) {
      const int64_t row = b * N + i;
      const T pos[3] = {x[row], y[row], z[row]};
      int64_t cc[3];
      for (int d = 0; d < 3; ++d) {
        int64_t v = use_cells ? static_cast<int64_t>(std::floor(pos[d] / size[d])) : 0;
        cc[d] = std::min(std::max<int64_t>(v, 0), nc[d] - 1);
      }
      cell_of[row] = (cc[0] * nc[1] + cc[1]) * nc[2] + cc[2] + b * n_cells;
      start[cell_of[row] + 1] += 1;
    }
  }
  for (int64_t k = 0; k < B * n_cells; ++k) start[k + 1] += start[k];
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t row = 0; row < BN; ++row) {
      const int64_t m = fill[cell_of[row]]++;
      members[m] = static_cast<HalfIndex>(row + offset);
      slot[row] = m;
      sx[m] = x[row];
      sy[m] = y[row];
      sz[m] = z[row];
      st[m] = types[row];
    }
  }
  // all pairs: the coordinates and types (as T) of the even and of the odd particles, each
  // (x, y, z, type) block of half_n entries, so that the owned candidates of a row (one parity)
  // lie contiguously
  const int64_t half_n = (N + 1) / 2;
  std::vector<T> by_parity(use_cells ? 0 : 8 * half_n, T(0));
  if (!use_cells) {
    for (int64_t i = 0; i < N; ++i) {
      T* q = by_parity.data() + (i & 1) * 4 * half_n + (i >> 1);
      q[0] = x[i];
      q[half_n] = y[i];
      q[2 * half_n] = z[i];
      q[3 * half_n] = T(types[i]);
    }
  }
  // the forward half stencil of every cell, computed once per build: cell index and the
  // periodic shift of its positions, in the order (a, e, g) the candidate loops visit them
  // (own cell first), so rows list their neighbours in the same order as a per-particle walk
  const int64_t side = 2 * reach + 1;
  const int64_t n_stencil = use_cells ? (side * side * side + 1) / 2 : 0;
  std::vector<int64_t> stencil_cell(n_cells * n_stencil);
  std::vector<T> stencil_shift(3 * n_cells * n_stencil);
  if (use_cells) {
    const T Lx = box[0], Ly = box[1], Lz = box[2];
    auto wrap = [](int64_t v, int64_t n_c, T length, T& shift) {
      shift = v < 0 ? -length : (v >= n_c ? length : T(0));
      return v < 0 ? v + n_c : (v >= n_c ? v - n_c : v);
    };
    for (int64_t own = 0; own < n_cells; ++own) {
      const int64_t cz = own % nc[2], cy = (own / nc[2]) % nc[1], cx = own / (nc[1] * nc[2]);
      int64_t k = own * n_stencil;
      for (int a = 0; a <= reach; ++a) {
        T shx;
        const int64_t ix = wrap(cx + a, nc[0], Lx, shx);
        for (int e = (a == 0 ? 0 : -reach); e <= reach; ++e) {
          T shy;
          const int64_t iy = wrap(cy + e, nc[1], Ly, shy);
          for (int g = (a == 0 && e == 0 ? 0 : -reach); g <= reach; ++g) {
            T shz;
            const int64_t iz = wrap(cz + g, nc[2], Lz, shz);
            stencil_cell[k] = (ix * nc[1] + iy) * nc[2] + iz;
            stencil_shift[3 * k] = shx;
            stencil_shift[3 * k + 1] = shy;
            stencil_shift[3 * k + 2] = shz;
            ++k;
          }
        }
      }
    }
  }
  // the same stencil as runs of consecutive members with one shift (cells next to each other
  // along z are next to each other in member order): what the candidate loops walk
  // explicitly vectorised candidate loops: AVX2 for all pairs, and for the cell runs where
  // the build has no AVX-512 (``simd``: the AVX-512 cell runs)
  const bool vector_loops = simd_loops_for<T>();  // read once: one path for the whole build
#if defined(__AVX512F__)
  const bool simd = vector_loops && use_cells;
#else
  const bool simd = false;
#endif
  std::vector<int64_t> run_first(use_cells ? n_cells + 1 : 0, 0), run_lo, run_hi;
  std::vector<T> run_shift;
  if (use_cells) {
    for (int64_t own = 0; own < n_cells; ++own) {
      run_first[own] = static_cast<int64_t>(run_lo.size());
      for (int64_t k = own * n_stencil + 1; k < (own + 1) * n_stencil; ++k) {
        const int64_t lo = start[stencil_cell[k]], hi = start[stencil_cell[k] + 1];
        if (lo == hi) continue;
        const T* shift = stencil_shift.data() + 3 * k;
        const int64_t r = static_cast<int64_t>(run_lo.size()) - 1;
        if (r >= run_first[own] && run_hi[r] == lo && run_shift[3 * r] == shift[0] &&
            run_shift[3 * r + 1] == shift[1] && run_shift[3 * r + 2] == shift[2]) {
          run_hi[r] = hi;
          continue;
        }
        run_lo.push_back(lo);
        run_hi.push_back(hi);
        run_shift.insert(run_shift.end(), shift, shift + 3);
      }
    }
    run_first[n_cells] = static_cast<int64_t>(run_lo.size());
  }
  at::parallel_for(0, BN, kGrain, [&](int64_t begin, int64_t end) {
    // B neighbours until the row is assembled; kSimdSlack spare slots for vector stores
    std::vector<HalfIndex> a_side(K + kSimdSlack), b_side(K + kSimdSlack);
    std::vector<uint8_t> flags(vector_loops ? 0 : N);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / N;
      const int64_t local = row - b * N;
      const T xi = x[row], yi = y[row], zi = z[row];
      const int64_t ti2 = 2 * types[row];
      const T lim[2] = {T(list_sq[ti2]), T(list_sq[ti2 + 1])};
      HalfIndex* out = nbr + row * K;
      int64_t na = 0, nb = 0;
      const int64_t own = cell_of[row] - b * n_cells;
      if (!use_cells) {
        // all pairs, minimum image, over the owned candidates only (the index rule: j < i
        // with i - j even, then j > i with j - i odd; both runs of one parity, in increasing
        // j as a walk over all j would list them): first the kept flags of a run, in a loop
        // the compiler vectorises, then branch-free appends
        auto scan = [&](int par, int64_t k0, int64_t k1) {
          const T* px = by_parity.data() + par * 4 * half_n + k0;
          const int64_t first_j = offset + b * N + par + 2 * k0;
#if defined(__AVX2__)
          if constexpr (std::is_same_v<T, double>) {
            if (vector_loops) {
              const __m128i steps = _mm_setr_epi32(0, 2, 4, 6);
              append_candidates_avx2<true>(
                  k1 - k0, px, px + half_n, px + 2 * half_n, px + 3 * half_n, xi, yi, zi,
                  box + 3 * b, lim,
                  [=](int64_t k, __m256i) {
                    return _mm_add_epi32(_mm_set1_epi32(static_cast<HalfIndex>(first_j + 2 * k)),
                                         steps);
                  },
                  a_side.data(), b_side.data(), K, na, nb);
              return;
            }
          }
#endif
          append_candidates<true>(
              k1 - k0, px, px + half_n, px + 2 * half_n, px + 3 * half_n, xi, yi, zi,
              box + 3 * b, lim, [=](int64_t k) { return first_j + 2 * k; }, flags.data(),
              a_side.data(), b_side.data(), K, na, nb);
        };
        const int par = static_cast<int>(local & 1);
        scan(par, 0, local >> 1);
        scan(1 - par, (local + 1) >> 1, (N - (1 - par) + 1) >> 1);
      }
#if defined(__AVX512F__)
      if constexpr (std::is_same_v<T, double>) {
        if (simd) {
          // own cell first (the members after this row: j > i), then the stencil's runs
          append_run_avx512(slot[row] + 1, start[own + 1], xi, yi, zi, lim, sx.data(),
                            sy.data(), sz.data(), st.data(), members.data(), a_side.data(),
                            b_side.data(), K, na, nb);
          for (int64_t r = run_first[own]; r < run_first[own + 1]; ++r)
            append_run_avx512(run_lo[r], run_hi[r], xi - run_shift[3 * r],
                              yi - run_shift[3 * r + 1], zi - run_shift[3 * r + 2], lim,
                              sx.data(), sy.data(), sz.data(), st.data(), members.data(),
                              a_side.data(), b_side.data(), K, na, nb);
        }
      }
#endif
      if (use_cells && !simd) {
        // own cell first (the members after this row: j > i), then the stencil's runs
        auto run = [&](int64_t lo, int64_t hi, T px, T py, T pz) {
          const HalfIndex* in_run = members.data() + lo;
#if defined(__AVX2__)
          if constexpr (std::is_same_v<T, double>) {
            if (vector_loops) {
              append_candidates_avx2<false>(
                  hi - lo, sx.data() + lo, sy.data() + lo, sz.data() + lo, st.data() + lo, px,
                  py, pz, box + 3 * b, lim,
                  [=](int64_t k, __m256i valid) {
                    return _mm_maskload_epi32(in_run + k, narrow_mask(valid));
                  },
                  a_side.data(), b_side.data(), K, na, nb);
              return;
            }
          }
#endif
          append_candidates<false>(
              hi - lo, sx.data() + lo, sy.data() + lo, sz.data() + lo, st.data() + lo, px, py,
              pz, box + 3 * b, lim, [=](int64_t k) { return in_run[k]; }, flags.data(),
              a_side.data(), b_side.data(), K, na, nb);
        };
        run(slot[row] + 1, start[own + 1], xi, yi, zi);
        for (int64_t r = run_first[own]; r < run_first[own + 1]; ++r)
          run(run_lo[r], run_hi[r], xi - run_shift[3 * r], yi - run_shift[3 * r + 1],
              zi - run_shift[3 * r + 2]);
      }
      // the row: its A neighbours, its B neighbours, padding with its own flat index
      const int64_t n = na + nb;
      const HalfIndex own_index = static_cast<HalfIndex>(row + offset);
      HalfIndex* cr = cnt + 2 * row;
      cr[0] = static_cast<HalfIndex>(n);
      if (n <= K) {
        std::copy(a_side.begin(), a_side.begin() + na, out);
        std::copy(b_side.begin(), b_side.begin() + nb, out + na);
        std::fill(out + n, out + K, own_index);
        cr[1] = static_cast<HalfIndex>(na);
      } else {  // overflow: the caller widens the rows and rebuilds
        std::fill(out, out + K, own_index);
        cr[1] = 0;
      }
    }
  });
}

std::vector<torch::Tensor> build_half_neighbors(torch::Tensor coords, torch::Tensor types,
                                                torch::Tensor box, torch::Tensor list_sq,
                                                double r_max, int64_t capacity) {
  TORCH_CHECK(coords.device().is_cpu() && coords.dim() == 3 && coords.size(0) == 3,
              "coords must be a CPU tensor (3, B, N)");
  TORCH_CHECK(capacity > 0, "capacity must be positive");
  auto c = coords.contiguous();
  auto t = types.contiguous();
  auto bx = box.contiguous();
  auto lsq = list_sq.to(torch::kFloat64).contiguous();
  const auto B = c.size(1), N = c.size(2);
  TORCH_CHECK(t.scalar_type() == torch::kInt64 && t.numel() == B * N, "types must be int64 (B, N)");
  check_half_size(B, N);
  auto opts = torch::TensorOptions().dtype(torch::kInt32);
  auto nbr = torch::empty({B, N, capacity}, opts);
  auto cnt = torch::empty({B, N, 2}, opts);
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "kalj_build_half_neighbors", [&] {
    const scalar_t* p = c.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b)
      build_half_kernel<scalar_t>(p + b * N, p + (B + b) * N, p + (2 * B + b) * N,
                                  t.data_ptr<int64_t>() + b * N, bx.data_ptr<scalar_t>() + 3 * b,
                                  lsq.data_ptr<double>(), r_max, N, capacity, b * N,
                                  nbr.data_ptr<HalfIndex>() + b * N * capacity,
                                  cnt.data_ptr<HalfIndex>() + 2 * b * N);
  });
  return {nbr, cnt};
}

// Wrap system b's coordinates r (3, B, N) into [0, L) (``img`` gains the shifts), copy them
// to ``ref`` and rebuild its half-list rows of ``nbr`` (B, N, K) and ``cnt`` (B, N, 2).
// Returns the system's longest row (> K: overflowed), or -1 where its coordinates are not
// finite (then nothing of it is changed).
template <typename T>
int64_t rebuild_system(int64_t b, int64_t B, int64_t N, int64_t K, T* r, T* ref, int64_t* img,
                       const T* L, const int64_t* types, const double* list_sq, double r_max,
                       HalfIndex* nbr, HalfIndex* cnt_all) {
  const int64_t BN = B * N;
  bool finite = true;
  for (int d = 0; d < 3; ++d)
    for (int64_t i = 0; i < N; ++i) finite &= std::isfinite(r[d * BN + b * N + i]);
  if (!finite) return -1;
  for (int d = 0; d < 3; ++d) {
    const T length = L[3 * b + d];
    for (int64_t i = 0; i < N; ++i) {
      const int64_t q = d * BN + b * N + i;
      const T shift = std::floor(r[q] / length);
      T w = r[q] - shift * length;
      if (w >= length) w = T(0);
      r[q] = w;
      ref[q] = w;
      img[q] += static_cast<int64_t>(shift);
    }
  }
  HalfIndex* cnt = cnt_all + 2 * b * N;
  build_half_kernel<T>(r + b * N, r + BN + b * N, r + 2 * BN + b * N, types + b * N, L + 3 * b,
                       list_sq, r_max, N, K, b * N, nbr + b * N * K, cnt);
  int64_t m = 0;
  for (int64_t i = 0; i < N; ++i) m = std::max<int64_t>(m, cnt[2 * i]);
  return m;
}

// Neighbour-list rebuild in place for the systems flagged in ``systems`` (B,) bool: wrap
// their coordinates into [0, L) (as torch_neighbors.wrap; ``images`` (3, B, N) int64 gain the
// shifts), copy them to ``reference``, and rebuild their half-list rows of ``neighbors``
// (B, N, K) and ``counts`` (B, N, 2), both int32.  Returns (B,) int64: the longest row of
// each rebuilt system (0 for the others; compare with K for overflow), or -1 for a system
// whose coordinates are not finite (then nothing of that system is changed).
torch::Tensor rebuild_half(torch::Tensor coords, torch::Tensor images, torch::Tensor reference,
                           torch::Tensor types, torch::Tensor box, torch::Tensor systems,
                           torch::Tensor neighbors, torch::Tensor counts, torch::Tensor list_sq,
                           double r_max) {
  TORCH_CHECK(coords.device().is_cpu() && coords.dim() == 3 && coords.size(0) == 3,
              "coords must be a CPU tensor (3, B, N)");
  for (const auto* t : {&coords, &images, &reference, &types, &box, &systems, &neighbors, &counts})
    TORCH_CHECK(t->is_contiguous(), "rebuild_half needs contiguous tensors");
  const auto B = coords.size(1), N = coords.size(2), K = neighbors.size(2);
  TORCH_CHECK(images.scalar_type() == torch::kInt64 && types.scalar_type() == torch::kInt64 &&
                  neighbors.scalar_type() == torch::kInt32 &&
                  counts.scalar_type() == torch::kInt32 && systems.scalar_type() == torch::kBool,
              "images and types must be int64, neighbors and counts int32, systems bool");
  check_half_size(B, N);
  TORCH_CHECK(counts.numel() == 2 * B * N && neighbors.size(0) == B && neighbors.size(1) == N &&
                  systems.numel() == B && reference.sizes() == coords.sizes() &&
                  images.sizes() == coords.sizes(),
              "inconsistent shapes in rebuild_half");
  auto lsq = list_sq.to(torch::kFloat64).contiguous();
  auto longest = torch::zeros({B}, torch::TensorOptions().dtype(torch::kInt64));
  int64_t* lo = longest.data_ptr<int64_t>();
  const bool* sel = systems.data_ptr<bool>();
  AT_DISPATCH_FLOATING_TYPES(coords.scalar_type(), "kalj_rebuild_half", [&] {
    scalar_t* r = coords.data_ptr<scalar_t>();
    scalar_t* ref = reference.data_ptr<scalar_t>();
    int64_t* img = images.data_ptr<int64_t>();
    const scalar_t* L = box.data_ptr<scalar_t>();
    // every data pointer taken here, not in the worker threads
    HalfIndex* counts_p = counts.data_ptr<HalfIndex>();
    HalfIndex* neighbors_p = neighbors.data_ptr<HalfIndex>();
    const int64_t* types_p = types.data_ptr<int64_t>();
    const double* lsq_p = lsq.data_ptr<double>();
    // one system: wrap, reset its reference, rebuild its rows (the row loop of the build is
    // parallel where the systems are not: results are the same either way)
    auto rebuild_one = [&](int64_t b) {
      lo[b] = rebuild_system<scalar_t>(b, B, N, K, r, ref, img, L, types_p, lsq_p, r_max,
                                       neighbors_p, counts_p);
    };
    std::vector<int64_t> chosen;
    for (int64_t b = 0; b < B; ++b)
      if (sel[b]) chosen.push_back(b);
    const int64_t n_chosen = static_cast<int64_t>(chosen.size());
    if (n_chosen >= at::get_num_threads() && n_chosen > 1) {
      // at least one system per thread: whole systems in parallel (the builds' own row loops
      // then run inline), so their serial parts (binning, stencil) overlap too
      parallel_tasks(n_chosen, [&](int64_t k) { rebuild_one(chosen[k]); });
    } else {
      for (const int64_t b : chosen) rebuild_one(b);
    }
  });
  return longest;
}

// The rows [first, last) of system b over half lists: adds each pair's force to the row's
// particle and subtracts it from the neighbour's, in ``acc`` (N, 4) = (fx, fy, fz, e) indexed
// by local particle index; with energies also half of each pair's U to either particle, the
// pair virial sum into ``w`` and the smallest r^2/sigma^2 into ``rmin``.  P (N, 4) holds the
// system's positions (x, y, z, pad).  Portable version, vectorised by the compiler: lanes of
// kLanes neighbours, each lane with its own sums, added in lane order at the end (the order
// does not depend on memory alignment).
template <typename T, bool with_energy>
void half_rows_portable(const T* P, T* acc, const HalfIndex* nbr, const HalfIndex* cnt,
                        const int64_t* types, const PairTable& tab, int64_t b, int64_t N,
                        int64_t K, int64_t first, int64_t last, T Lx, T Ly, T Lz, double& w,
                        double& rmin) {
  const T iLx = T(1) / Lx, iLy = T(1) / Ly, iLz = T(1) / Lz;
  for (int64_t li = first; li < last; ++li) {
    prefetch_ahead(nbr, cnt, b * N, li, first, last, K);
    const int64_t row = b * N + li;
    const T xi = P[4 * li], yi = P[4 * li + 1], zi = P[4 * li + 2];
    const int64_t ti2 = 2 * types[row];
    const int64_t n = std::min<int64_t>(cnt[2 * row], K);
    const int64_t na = std::min<int64_t>(cnt[2 * row + 1], n);
    const HalfIndex* nb = nbr + row * K;
    T ax[kLanes] = {}, ay[kLanes] = {}, az[kLanes] = {}, e[kLanes] = {};
    double wl[kLanes] = {}, ml[kLanes];
    std::fill(ml, ml + kLanes, std::numeric_limits<double>::infinity());
    const int64_t base = b * N;
    for (int seg = 0; seg < 2; ++seg) {
      const int64_t p = ti2 + seg;
      const T c12 = T(tab.c12[p]), c6 = T(tab.c6[p]), rc2 = T(tab.rc2[p]);
      const T c12x12 = T(12) * c12, c6x6 = T(6) * c6;
      const T duc = T(tab.ducut[p]), uc = T(tab.ucut[p]), rc = T(tab.rcut[p]);
      const double isig2 = 1.0 / tab.sig2[p];
      const int64_t k0 = seg == 0 ? 0 : na, k1 = seg == 0 ? na : n;
      for (int64_t kb = k0; kb < k1; kb += kLanes) {
        // a lane past the segment points at the row itself (never read beyond the row)
        int32_t idx[kLanes];  // local indices: int32 lets the compiler gather and scatter
        for (int l = 0; l < kLanes; ++l) idx[l] = int32_t(kb + l < k1 ? nb[kb + l] - base : li);
#pragma omp simd
        for (int l = 0; l < kLanes; ++l) {
          const bool valid = kb + l < k1;
          const int32_t lj = idx[l];
          T dx = xi - P[4 * lj], dy = yi - P[4 * lj + 1], dz = zi - P[4 * lj + 2];
          dx -= Lx * std::nearbyint(dx * iLx);
          dy -= Ly * std::nearbyint(dy * iLy);
          dz -= Lz * std::nearbyint(dz * iLz);
          const T r2 = dx * dx + dy * dy + dz * dz;
          const bool inside = valid && r2 < rc2;
          const T r2s = inside ? r2 : T(1);
          const T ir = T(1) / std::sqrt(r2s);
          const T ir2 = ir * ir, ir6 = ir2 * ir2 * ir2;
          const T fr = inside ? (c12x12 * ir6 * ir6 - c6x6 * ir6) * ir2 + duc * ir : T(0);
          const T fx = fr * dx, fy = fr * dy, fz = fr * dz;
          ax[l] += fx;
          ay[l] += fy;
          az[l] += fz;
          acc[4 * lj] -= fx;
          acc[4 * lj + 1] -= fy;
          acc[4 * lj + 2] -= fz;
          if constexpr (with_energy) {
            const T u =
                inside ? c12 * ir6 * ir6 - c6 * ir6 - uc - (r2s * ir - rc) * duc : T(0);
            e[l] += u;
            acc[4 * lj + 3] += T(0.5) * u;
            wl[l] += double(fr * r2s);
            const double q = double(r2) * isig2;
            ml[l] = valid && q < ml[l] ? q : ml[l];
          }
        }
      }
    }
    T sx = 0, sy = 0, sz = 0, se = 0;
    for (int l = 0; l < kLanes; ++l) {
      sx += ax[l];
      sy += ay[l];
      sz += az[l];
      se += e[l];
      w += wl[l];
      rmin = std::min(rmin, ml[l]);
    }
    T* Ai = acc + 4 * li;
    Ai[0] += sx;
    Ai[1] += sy;
    Ai[2] += sz;
    Ai[3] += T(0.5) * se;
  }
}

#if defined(__AVX512F__)
// Sum of the eight lanes in lane order (0 + 1 + ... + 7): a fixed order.
inline double lane_sum(__m512d v) {
  alignas(64) double a[8];
  _mm512_store_pd(a, v);
  double s = a[0];
  for (int l = 1; l < 8; ++l) s += a[l];
  return s;
}

// Pair forces of eight neighbours: their local indices times 4 (rows of P and acc, int32), the
// mask of the pairs inside the cutoff, force components (zero outside), energies and fr r^2.
struct PairBlock {
  __m256i j4;
  __mmask8 inside;
  __m512d fx, fy, fz, u, w;
};

// The coefficients of one pair type as vectors.
struct SegmentCoefficients {
  __m512d rc2, c12x12, c6x6, c12, c6, duc, uc, rc, isig2;
};

// AVX-512 version of half_rows_portable for float64: eight neighbours per vector, positions
// gathered from P, the neighbours' force updates transposed into rows and subtracted row by
// row (the j of one row are distinct).  ``acc`` has kLanes spare rows N..N+7 past the system's
// particles, where the lanes past a row's last block send their (zero) updates.  Sums per
// lane, reduced in a fixed order: deterministic, independent of alignment.
template <bool with_energy>
void half_rows_avx512(const double* P, double* acc, const HalfIndex* nbr, const HalfIndex* cnt,
                      const int64_t* types, const PairTable& tab, int64_t b, int64_t N, int64_t K,
                      int64_t first, int64_t last, double Lx, double Ly, double Lz, double& w,
                      double& rmin) {
  const __m512d vLx = _mm512_set1_pd(Lx), vLy = _mm512_set1_pd(Ly), vLz = _mm512_set1_pd(Lz);
  const __m512d viLx = _mm512_set1_pd(1.0 / Lx), viLy = _mm512_set1_pd(1.0 / Ly),
                viLz = _mm512_set1_pd(1.0 / Lz);
  const __m512d one = _mm512_set1_pd(1.0), half = _mm512_set1_pd(0.5);
  const __m512d three = _mm512_set1_pd(3.0);
  const __m512d inf = _mm512_set1_pd(std::numeric_limits<double>::infinity());
  const __m256i vbase = _mm256_set1_epi32(static_cast<HalfIndex>(b * N));
  // permutations taking the unpacked (x, y) and (z, w) pairs of two lanes to their two rows
  const __m512i rows_lo = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
  const __m512i rows_hi = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  // the pair coefficients of the four pair types as vectors, once per call
  SegmentCoefficients coef[4];
  for (int p = 0; p < 4; ++p) {
    coef[p].rc2 = _mm512_set1_pd(tab.rc2[p]);
    coef[p].c12x12 = _mm512_set1_pd(12.0 * tab.c12[p]);
    coef[p].c6x6 = _mm512_set1_pd(6.0 * tab.c6[p]);
    coef[p].c12 = _mm512_set1_pd(tab.c12[p]);
    coef[p].c6 = _mm512_set1_pd(tab.c6[p]);
    coef[p].duc = _mm512_set1_pd(tab.ducut[p]);
    coef[p].uc = _mm512_set1_pd(tab.ucut[p]);
    coef[p].rc = _mm512_set1_pd(tab.rcut[p]);
    coef[p].isig2 = _mm512_set1_pd(1.0 / tab.sig2[p]);
  }
  // flat indices of the spare rows N + l (int32, in the low half; check_half_size)
  const __m512i vspare = _mm512_zextsi256_si512(
      _mm256_add_epi32(_mm256_set1_epi32(static_cast<HalfIndex>(b * N + N)),
                       _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  __m512d vw = _mm512_setzero_pd(), vmin = inf;
  for (int64_t li = first; li < last; ++li) {
    prefetch_ahead(nbr, cnt, b * N, li, first, last, K);
    const int64_t row = b * N + li;
    const __m512d xi = _mm512_set1_pd(P[4 * li]), yi = _mm512_set1_pd(P[4 * li + 1]),
                  zi = _mm512_set1_pd(P[4 * li + 2]);
    const int64_t ti2 = 2 * types[row];
    const int64_t n = std::min<int64_t>(cnt[2 * row], K);
    const int64_t na = std::min<int64_t>(cnt[2 * row + 1], n);
    const HalfIndex* nb = nbr + row * K;
    __m512d ax = _mm512_setzero_pd(), ay = ax, az = ax, ae = ax;
    // the row's blocks of eight slots: ceil(na / 8) over its A neighbours, then
    // ceil((n - na) / 8) over its B neighbours (each segment's pairs share coefficients), walked
    // as one sequence: one loop exit per row instead of a loop and a partial block per segment
    // (their mispredicted branches were a large part of a short row's time)
    const int64_t blocks_a = (na + kLanes - 1) / kLanes;
    const int64_t blocks = blocks_a + (n - na + kLanes - 1) / kLanes;
    // one block of eight neighbours: the pair forces (zero outside the cutoff)
    auto compute = [&](int64_t t) {
      PairBlock q{};
      // block t: the A blocks (slots from 0) first, then the B blocks (slots from na)
      const bool seg = t >= blocks_a;
      const int64_t kb = seg ? na + kLanes * (t - blocks_a) : kLanes * t;
      const int64_t k1 = seg ? n : na;
      const SegmentCoefficients& cf = coef[ti2 + seg];
      const __m512d rc2 = cf.rc2, c12x12 = cf.c12x12, c6x6 = cf.c6x6, duc = cf.duc;
      // the first k1 - kb lanes (all eight for eight or more), without a branch
      const __mmask8 valid =
          __mmask8((1u << std::min<int64_t>(k1 - kb, kLanes)) - 1u);
      // lanes past the segment point at spare accumulator rows N + l (their updates below
      // are zeros; never at a real particle: no chain of updates through one row)
      // (eight int32 entries: a 16-lane load with the low lanes enabled, never past the row)
      const __m256i j = _mm256_sub_epi32(
          _mm512_castsi512_si256(_mm512_mask_loadu_epi32(vspare, valid, nb + kb)), vbase);
      q.j4 = _mm256_slli_epi32(j, 2);
      const __m512d zero = _mm512_setzero_pd();
      __m512d dx = _mm512_sub_pd(xi, _mm512_mask_i32gather_pd(zero, valid, q.j4, P, 8));
      __m512d dy = _mm512_sub_pd(yi, _mm512_mask_i32gather_pd(zero, valid, q.j4, P + 1, 8));
      __m512d dz = _mm512_sub_pd(zi, _mm512_mask_i32gather_pd(zero, valid, q.j4, P + 2, 8));
      dx = _mm512_fnmadd_pd(vLx, _mm512_roundscale_pd(_mm512_mul_pd(dx, viLx), kRound), dx);
      dy = _mm512_fnmadd_pd(vLy, _mm512_roundscale_pd(_mm512_mul_pd(dy, viLy), kRound), dy);
      dz = _mm512_fnmadd_pd(vLz, _mm512_roundscale_pd(_mm512_mul_pd(dz, viLz), kRound), dz);
      const __m512d r2 = squared_norm(dx, dy, dz);
      if constexpr (with_energy)
        // the new value first: a NaN ratio keeps the lane's minimum (the portable rule)
        vmin = _mm512_mask_min_pd(vmin, valid, _mm512_mul_pd(r2, cf.isig2), vmin);
      q.inside = _mm512_mask_cmp_pd_mask(valid, r2, rc2, _CMP_LT_OQ);
      const __m512d r2s = _mm512_mask_blend_pd(q.inside, one, r2);
      // 1/r: the 14-bit estimate and two Newton steps, y <- y (3 - r2 y^2) / 2 (relative
      // error ~1e-16, a few ulp: a fraction of the cost of a square root and a division)
      __m512d ir = _mm512_rsqrt14_pd(r2s);
      ir = _mm512_mul_pd(_mm512_mul_pd(half, ir),
                         _mm512_fnmadd_pd(_mm512_mul_pd(r2s, ir), ir, three));
      ir = _mm512_mul_pd(_mm512_mul_pd(half, ir),
                         _mm512_fnmadd_pd(_mm512_mul_pd(r2s, ir), ir, three));
      const __m512d ir2 = _mm512_mul_pd(ir, ir);
      const __m512d ir6 = _mm512_mul_pd(_mm512_mul_pd(ir2, ir2), ir2);
      // fr = (12 c12 ir6^2 - 6 c6 ir6) ir2 + duc ir, as the portable loop
      const __m512d lj = _mm512_sub_pd(_mm512_mul_pd(_mm512_mul_pd(c12x12, ir6), ir6),
                                       _mm512_mul_pd(c6x6, ir6));
      const __m512d fr = _mm512_maskz_mov_pd(
          q.inside, _mm512_add_pd(_mm512_mul_pd(lj, ir2), _mm512_mul_pd(duc, ir)));
      q.fx = _mm512_mul_pd(fr, dx);
      q.fy = _mm512_mul_pd(fr, dy);
      q.fz = _mm512_mul_pd(fr, dz);
      if constexpr (with_energy) {
        // u = c12 ir6^2 - c6 ir6 - uc - (r - rc) duc, r = r2 ir
        const __m512d r = _mm512_mul_pd(r2s, ir);
        const __m512d c12 = cf.c12, c6 = cf.c6, uc = cf.uc, rc = cf.rc;
        __m512d u = _mm512_sub_pd(_mm512_mul_pd(_mm512_mul_pd(c12, ir6), ir6),
                                  _mm512_mul_pd(c6, ir6));
        u = _mm512_sub_pd(_mm512_sub_pd(u, uc), _mm512_mul_pd(_mm512_sub_pd(r, rc), duc));
        q.u = _mm512_maskz_mov_pd(q.inside, u);
        q.w = _mm512_mul_pd(fr, r2s);
      }
      return q;
    };
    // its sums into the row's lanes, its updates into the neighbours' buffers: the lanes'
    // (fx, fy, fz, -u/2) transposed into rows and subtracted from the neighbours' (fx, fy,
    // fz, e) rows with plain loads and stores (the j of one row are distinct).  Gathers and
    // scatters did this before; on AMD Zen 4 the scatters are microcoded and the loads after
    // them waited: the hottest instructions of the loop.  Lanes outside the cutoff or past
    // the segment subtract zeros, which leaves an accumulator unchanged (accumulators start
    // at +0 and never become -0), and a - (-u/2) = a + u/2 exactly as the fused a + u/2 of
    // the scatter version: results bit for bit those of the gather/scatter loop.
    auto apply = [&](const PairBlock& q) {
      ax = _mm512_add_pd(ax, q.fx);
      ay = _mm512_add_pd(ay, q.fy);
      az = _mm512_add_pd(az, q.fz);
      __m512d gw = _mm512_setzero_pd();
      if constexpr (with_energy) {
        ae = _mm512_add_pd(ae, q.u);
        gw = _mm512_sub_pd(_mm512_setzero_pd(), _mm512_mul_pd(half, q.u));
        vw = _mm512_add_pd(vw, q.w);
      }
      const __m512d t0 = _mm512_unpacklo_pd(q.fx, q.fy);  // x0 y0 x2 y2 x4 y4 x6 y6
      const __m512d t1 = _mm512_unpackhi_pd(q.fx, q.fy);  // x1 y1 x3 y3 x5 y5 x7 y7
      const __m512d t2 = _mm512_unpacklo_pd(q.fz, gw);    // z0 w0 z2 w2 ...
      const __m512d t3 = _mm512_unpackhi_pd(q.fz, gw);    // z1 w1 z3 w3 ...
      const __m512d r02 = _mm512_permutex2var_pd(t0, rows_lo, t2);  // row 0 | row 2
      const __m512d r46 = _mm512_permutex2var_pd(t0, rows_hi, t2);  // row 4 | row 6
      const __m512d r13 = _mm512_permutex2var_pd(t1, rows_lo, t3);  // row 1 | row 3
      const __m512d r57 = _mm512_permutex2var_pd(t1, rows_hi, t3);  // row 5 | row 7
      alignas(32) HalfIndex j4[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(j4), q.j4);
      auto update = [&](int64_t at, __m256d r) {
        double* a = acc + at;
        _mm256_storeu_pd(a, _mm256_sub_pd(_mm256_loadu_pd(a), r));
      };
      update(j4[0], _mm512_castpd512_pd256(r02));
      update(j4[1], _mm512_castpd512_pd256(r13));
      update(j4[2], _mm512_extractf64x4_pd(r02, 1));
      update(j4[3], _mm512_extractf64x4_pd(r13, 1));
      update(j4[4], _mm512_castpd512_pd256(r46));
      update(j4[5], _mm512_castpd512_pd256(r57));
      update(j4[6], _mm512_extractf64x4_pd(r46, 1));
      update(j4[7], _mm512_extractf64x4_pd(r57, 1));
    };
    // two blocks in flight (independent: the j of a row are distinct), applied in slot
    // order, so the sums are those of one block after the other
    for (int64_t t = 0; t < blocks; t += 2) {
      const PairBlock first_block = compute(t);
      if (t + 1 < blocks) {
        const PairBlock second_block = compute(t + 1);
        apply(first_block);
        apply(second_block);
      } else {
        apply(first_block);
      }
    }
    double* Ai = acc + 4 * li;
    Ai[0] += lane_sum(ax);
    Ai[1] += lane_sum(ay);
    Ai[2] += lane_sum(az);
    if constexpr (with_energy) Ai[3] += 0.5 * lane_sum(ae);
  }
  if constexpr (with_energy) {
    w += lane_sum(vw);
    alignas(64) double m[8];
    _mm512_store_pd(m, vmin);
    for (int l = 0; l < 8; ++l) rmin = std::min(rmin, m[l]);
  }
}

#endif

#if defined(TBOTAN_AVX2_ROWS)
// AVX2 version of half_rows_portable for float64 (CPUs without AVX-512): the portable loop's
// kLanes = 8 lanes as two vectors of four, every operation the portable one in the same order
// (square root and division, no fused multiply-adds, the same lane sums), so its results are
// the portable results bit for bit.  Each lane's position row (x, y, z, pad) is loaded whole
// and the rows transposed into vectors; the neighbours' updates are transposed back into rows
// and subtracted row by row (AVX2 has no scatter; the j of one row are distinct).
template <bool with_energy>
void half_rows_avx2(const double* P, double* acc, const HalfIndex* nbr, const HalfIndex* cnt,
                    const int64_t* types, const PairTable& tab, int64_t b, int64_t N, int64_t K,
                    int64_t first, int64_t last, double Lx, double Ly, double Lz, double& w,
                    double& rmin) {
  static_assert(kLanes == 8, "two vectors of four lanes");
  const double iLx = 1.0 / Lx, iLy = 1.0 / Ly, iLz = 1.0 / Lz;
  const __m256d vLx = _mm256_set1_pd(Lx), vLy = _mm256_set1_pd(Ly), vLz = _mm256_set1_pd(Lz);
  const __m256d viLx = _mm256_set1_pd(iLx), viLy = _mm256_set1_pd(iLy),
                viLz = _mm256_set1_pd(iLz);
  const __m256d one = _mm256_set1_pd(1.0), zero = _mm256_setzero_pd();
  const __m256d half = _mm256_set1_pd(0.5);
  const __m256i lane_no[2] = {_mm256_set_epi64x(3, 2, 1, 0), _mm256_set_epi64x(7, 6, 5, 4)};
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  const int64_t base = b * N;
  for (int64_t li = first; li < last; ++li) {
    prefetch_ahead(nbr, cnt, b * N, li, first, last, K);
    const int64_t row = base + li;
    const __m256d xi = _mm256_set1_pd(P[4 * li]), yi = _mm256_set1_pd(P[4 * li + 1]),
                  zi = _mm256_set1_pd(P[4 * li + 2]);
    const int64_t ti2 = 2 * types[row];
    const int64_t n = std::min<int64_t>(cnt[2 * row], K);
    const int64_t na = std::min<int64_t>(cnt[2 * row + 1], n);
    const HalfIndex* nb = nbr + row * K;
    __m256d ax[2] = {zero, zero}, ay[2] = {zero, zero}, az[2] = {zero, zero};
    __m256d e[2] = {zero, zero}, wl[2] = {zero, zero};
    const __m256d inf = _mm256_set1_pd(std::numeric_limits<double>::infinity());
    __m256d ml[2] = {inf, inf};
    for (int seg = 0; seg < 2; ++seg) {
      const int64_t p = ti2 + seg;
      const __m256d rc2 = _mm256_set1_pd(tab.rc2[p]);
      const __m256d c12x12 = _mm256_set1_pd(12.0 * tab.c12[p]),
                    c6x6 = _mm256_set1_pd(6.0 * tab.c6[p]);
      const __m256d c12 = _mm256_set1_pd(tab.c12[p]), c6 = _mm256_set1_pd(tab.c6[p]);
      const __m256d duc = _mm256_set1_pd(tab.ducut[p]), uc = _mm256_set1_pd(tab.ucut[p]),
                    rc = _mm256_set1_pd(tab.rcut[p]);
      const __m256d isig2 = _mm256_set1_pd(1.0 / tab.sig2[p]);
      const int64_t k0 = seg == 0 ? 0 : na, k1 = seg == 0 ? na : n;
      for (int64_t kb = k0; kb < k1; kb += kLanes) {
        // a lane past the segment points at the row itself (never read beyond the row)
        alignas(32) int32_t idx[kLanes];
        for (int l = 0; l < kLanes; ++l) idx[l] = int32_t(kb + l < k1 ? nb[kb + l] - base : li);
        const __m256i left = _mm256_set1_epi64x(k1 - kb);
        for (int h = 0; h < 2; ++h) {
          const __m256d valid = _mm256_castsi256_pd(_mm256_cmpgt_epi64(left, lane_no[h]));
          // the lanes' (x, y, z, pad) rows, transposed into x, y and z vectors
          const int32_t* q = idx + 4 * h;
          const __m256d p0 = _mm256_loadu_pd(P + 4 * q[0]), p1 = _mm256_loadu_pd(P + 4 * q[1]);
          const __m256d p2 = _mm256_loadu_pd(P + 4 * q[2]), p3 = _mm256_loadu_pd(P + 4 * q[3]);
          const __m256d t0 = _mm256_unpacklo_pd(p0, p1), t1 = _mm256_unpackhi_pd(p0, p1);
          const __m256d t2 = _mm256_unpacklo_pd(p2, p3), t3 = _mm256_unpackhi_pd(p2, p3);
          __m256d dx = _mm256_sub_pd(xi, _mm256_permute2f128_pd(t0, t2, 0x20));
          __m256d dy = _mm256_sub_pd(yi, _mm256_permute2f128_pd(t1, t3, 0x20));
          __m256d dz = _mm256_sub_pd(zi, _mm256_permute2f128_pd(t0, t2, 0x31));
          dx = _mm256_sub_pd(
              dx, _mm256_mul_pd(vLx, _mm256_round_pd(_mm256_mul_pd(dx, viLx), kRound)));
          dy = _mm256_sub_pd(
              dy, _mm256_mul_pd(vLy, _mm256_round_pd(_mm256_mul_pd(dy, viLy), kRound)));
          dz = _mm256_sub_pd(
              dz, _mm256_mul_pd(vLz, _mm256_round_pd(_mm256_mul_pd(dz, viLz), kRound)));
          const __m256d r2 = _mm256_add_pd(
              _mm256_add_pd(_mm256_mul_pd(dx, dx), _mm256_mul_pd(dy, dy)), _mm256_mul_pd(dz, dz));
          const __m256d inside = _mm256_and_pd(valid, _mm256_cmp_pd(r2, rc2, _CMP_LT_OQ));
          const __m256d r2s = _mm256_blendv_pd(one, r2, inside);
          const __m256d ir = _mm256_div_pd(one, _mm256_sqrt_pd(r2s));
          const __m256d ir2 = _mm256_mul_pd(ir, ir);
          const __m256d ir6 = _mm256_mul_pd(_mm256_mul_pd(ir2, ir2), ir2);
          const __m256d lj = _mm256_sub_pd(_mm256_mul_pd(_mm256_mul_pd(c12x12, ir6), ir6),
                                           _mm256_mul_pd(c6x6, ir6));
          const __m256d fr = _mm256_and_pd(
              inside, _mm256_add_pd(_mm256_mul_pd(lj, ir2), _mm256_mul_pd(duc, ir)));
          const __m256d gx = _mm256_mul_pd(fr, dx), gy = _mm256_mul_pd(fr, dy),
                        gz = _mm256_mul_pd(fr, dz);
          __m256d gw = zero;
          ax[h] = _mm256_add_pd(ax[h], gx);
          ay[h] = _mm256_add_pd(ay[h], gy);
          az[h] = _mm256_add_pd(az[h], gz);
          if constexpr (with_energy) {
            __m256d u = _mm256_sub_pd(_mm256_mul_pd(_mm256_mul_pd(c12, ir6), ir6),
                                      _mm256_mul_pd(c6, ir6));
            u = _mm256_sub_pd(_mm256_sub_pd(u, uc),
                              _mm256_mul_pd(_mm256_sub_pd(_mm256_mul_pd(r2s, ir), rc), duc));
            u = _mm256_and_pd(inside, u);
            e[h] = _mm256_add_pd(e[h], u);
            gw = _mm256_sub_pd(zero, _mm256_mul_pd(half, u));  // a - (-u/2) = a + u/2 exactly
            wl[h] = _mm256_add_pd(wl[h], _mm256_mul_pd(fr, r2s));
            const __m256d ratio = _mm256_mul_pd(r2, isig2);
            // the new value where valid and smaller (a NaN ratio keeps the lane's minimum)
            const __m256d take = _mm256_and_pd(valid, _mm256_cmp_pd(ratio, ml[h], _CMP_LT_OQ));
            ml[h] = _mm256_blendv_pd(ml[h], ratio, take);
          }
          // the updates (fx, fy, fz, -u/2) of the four lanes, transposed back into rows and
          // subtracted from the neighbours' (fx, fy, fz, e) in lane order
          const __m256d s0 = _mm256_unpacklo_pd(gx, gy), s1 = _mm256_unpackhi_pd(gx, gy);
          const __m256d s2 = _mm256_unpacklo_pd(gz, gw), s3 = _mm256_unpackhi_pd(gz, gw);
          const __m256d rows[4] = {
              _mm256_permute2f128_pd(s0, s2, 0x20), _mm256_permute2f128_pd(s1, s3, 0x20),
              _mm256_permute2f128_pd(s0, s2, 0x31), _mm256_permute2f128_pd(s1, s3, 0x31)};
          for (int l = 0; l < 4; ++l) {
            double* a = acc + 4 * q[l];
            _mm256_storeu_pd(a, _mm256_sub_pd(_mm256_loadu_pd(a), rows[l]));
          }
        }
      }
    }
    alignas(32) double lx[kLanes], ly[kLanes], lz[kLanes], le[kLanes], lw[kLanes], lm[kLanes];
    for (int h = 0; h < 2; ++h) {
      _mm256_store_pd(lx + 4 * h, ax[h]);
      _mm256_store_pd(ly + 4 * h, ay[h]);
      _mm256_store_pd(lz + 4 * h, az[h]);
      _mm256_store_pd(le + 4 * h, e[h]);
      _mm256_store_pd(lw + 4 * h, wl[h]);
      _mm256_store_pd(lm + 4 * h, ml[h]);
    }
    double sx = 0, sy = 0, sz = 0, se = 0;
    for (int l = 0; l < kLanes; ++l) {
      sx += lx[l];
      sy += ly[l];
      sz += lz[l];
      se += le[l];
      if constexpr (with_energy) {
        w += lw[l];
        rmin = std::min(rmin, lm[l]);
      }
    }
    double* Ai = acc + 4 * li;
    Ai[0] += sx;
    Ai[1] += sy;
    Ai[2] += sz;
    if constexpr (with_energy) Ai[3] += 0.5 * se;
  }
}
#endif

// The rows of one chunk: the AVX-512 (or AVX2) version where ``simd`` (simd_loops_for<T>()),
// the portable one otherwise.
template <typename T, bool with_energy>
void half_rows(bool simd, const T* P, T* acc, const HalfIndex* nbr, const HalfIndex* cnt,
               const int64_t* types, const PairTable& tab, int64_t b, int64_t N, int64_t K,
               int64_t first, int64_t last, T Lx, T Ly, T Lz, double& w, double& rmin) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, double>) {
    if (simd) {
      half_rows_avx512<with_energy>(P, acc, nbr, cnt, types, tab, b, N, K, first, last, Lx, Ly,
                                    Lz, w, rmin);
      return;
    }
  }
#elif defined(TBOTAN_AVX2_ROWS)
  if constexpr (std::is_same_v<T, double>) {
    if (simd) {
      half_rows_avx2<with_energy>(P, acc, nbr, cnt, types, tab, b, N, K, first, last, Lx, Ly, Lz,
                                  w, rmin);
      return;
    }
  }
#endif
  (void)simd;
  half_rows_portable<T, with_energy>(P, acc, nbr, cnt, types, tab, b, N, K, first, last, Lx, Ly,
                                     Lz, w, rmin);
}
// Pair forces over half lists.  With ``energy`` non-null also per-particle energies (half of
// each pair's U to either particle), per-system virials and closest approach.
//
// ``before(b)`` runs first thing in system b's task where a system is one chunk (N <= 2048;
// the fused rebuild and forces of rebuild_half_forces), else it must do nothing.
struct NoPreparation {
  void operator()(int64_t) const {}
};

template <typename T, bool with_energy, typename Before = NoPreparation>
void half_pair_kernel(const T* c, const HalfIndex* nbr, const HalfIndex* cnt, const int64_t* types,
                      const T* box, const PairTable& tab, int64_t B, int64_t N, int64_t K, T* f,
                      T* energy, double* virial, double* min_ratio,
                      const Before& before = Before()) {
  const int64_t BN = B * N;
  const int64_t rows_per_chunk = half_chunk_rows(N);
  const int64_t C = (N + rows_per_chunk - 1) / rows_per_chunk;
  // positions interleaved (x, y, z, pad): one cache line per neighbour instead of three;
  // chunk buffers (fx, fy, fz, e) per particle of the chunk's system, zeroed by their chunk
  // (both left uninitialised here: every element is written before it is read)
  std::unique_ptr<T[]> pos(new T[4 * BN]);
  // each chunk's buffer: the system's N rows and kLanes spare rows (see half_rows_avx512)
  const int64_t stride = 4 * (N + kLanes);
  std::unique_ptr<T[]> buf(new T[stride * B * C]);
  const bool simd = simd_loops_for<T>();  // read once: one path for the whole call
  std::vector<double> chunk_virial(B * C, 0.0);
  std::vector<double> chunk_min(B * C, std::numeric_limits<double>::infinity());
  auto interleave = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      pos[4 * i] = c[i];
      pos[4 * i + 1] = c[BN + i];
      pos[4 * i + 2] = c[2 * BN + i];
      pos[4 * i + 3] = T(0);
    }
  };
  auto rows_of_task = [&](int64_t task) {
    const int64_t b = task / C, chunk = task % C;
    T* acc = buf.get() + stride * task;  // indexed by the local particle index
    std::fill(acc, acc + stride, T(0));
    const T* P = pos.get() + 4 * N * b;
    const T Lx = box[3 * b], Ly = box[3 * b + 1], Lz = box[3 * b + 2];
    const int64_t first = chunk * rows_per_chunk;
    const int64_t last = std::min(N, first + rows_per_chunk);
    double w = 0;
    double rmin = std::numeric_limits<double>::infinity();
    half_rows<T, with_energy>(simd, P, acc, nbr, cnt, types, tab, b, N, K, first, last, Lx, Ly,
                              Lz, w, rmin);
    chunk_virial[task] = w;
    chunk_min[task] = rmin;
  };
  if (C == 1) {
    // one chunk per system (N <= 2048): each system's task interleaves its positions, runs its
    // rows and writes its forces, all in one parallel region (one fork-join per call instead
    // of three: on a loaded machine each one waits for the slowest thread)
    // (systems handed out as threads come free: parallel_tasks)
    parallel_tasks(B, [&](int64_t b) {
      before(b);
      interleave(b * N, (b + 1) * N);
      rows_of_task(b);
      const T* a = buf.get() + stride * b;
      for (int64_t li = 0; li < N; ++li) {
        const int64_t row = b * N + li;
        f[row] = a[4 * li];
        f[BN + row] = a[4 * li + 1];
        f[2 * BN + row] = a[4 * li + 2];
        if constexpr (with_energy) energy[row] = a[4 * li + 3];
      }
    });
  } else {
    at::parallel_for(0, BN, 8192, interleave);
    parallel_tasks(B * C, rows_of_task);
  }
  // a particle's totals: its chunks' buffers summed in chunk order
  if (C > 1) at::parallel_for(0, BN, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / N, li = row - b * N;
      const T* a = buf.get() + stride * C * b + 4 * li;
      T fx = a[0], fy = a[1], fz = a[2], e = a[3];
      for (int64_t chunk = 1; chunk < C; ++chunk) {
        const T* q = a + stride * chunk;
        fx += q[0];
        fy += q[1];
        fz += q[2];
        e += q[3];
      }
      f[row] = fx;
      f[BN + row] = fy;
      f[2 * BN + row] = fz;
      if constexpr (with_energy) energy[row] = e;
    }
  });
  if constexpr (with_energy) {
    for (int64_t b = 0; b < B; ++b) {
      double w = 0, m = std::numeric_limits<double>::infinity();
      for (int64_t chunk = 0; chunk < C; ++chunk) {
        w += chunk_virial[b * C + chunk];
        m = std::min(m, chunk_min[b * C + chunk]);
      }
      virial[b] = w;
      min_ratio[b] = std::sqrt(m);
    }
  }
}

void check_half_layout(const torch::Tensor& coords, const torch::Tensor& neighbors,
                       const torch::Tensor& counts, const torch::Tensor& types,
                       const torch::Tensor& box) {
  TORCH_CHECK(coords.device().is_cpu(), "native kernels run on the CPU");
  TORCH_CHECK(coords.dim() == 3 && coords.size(0) == 3, "coords must be (3, B, N)");
  TORCH_CHECK(coords.is_contiguous() && neighbors.is_contiguous() && counts.is_contiguous() &&
                  types.is_contiguous() && box.is_contiguous(),
              "native kernels need contiguous tensors");
  const auto B = coords.size(1), N = coords.size(2);
  TORCH_CHECK(neighbors.dim() == 3 && neighbors.size(0) == B && neighbors.size(1) == N,
              "neighbors must be (B, N, K)");
  TORCH_CHECK(neighbors.scalar_type() == torch::kInt32 && counts.scalar_type() == torch::kInt32,
              "half-list neighbors and counts must be int32");
  TORCH_CHECK(types.scalar_type() == torch::kInt64, "types must be int64");
  TORCH_CHECK(counts.numel() == 2 * B * N, "half-list counts must be (B, N, 2)");
  check_half_size(B, N);
  TORCH_CHECK(types.numel() == B * N, "types must be (B, N)");
  TORCH_CHECK(box.scalar_type() == coords.scalar_type() && box.numel() == 3 * B,
              "box must be (B, 3) with the dtype of coords");
}

torch::Tensor half_forces(torch::Tensor coords, torch::Tensor neighbors, torch::Tensor counts,
                          torch::Tensor types, torch::Tensor box, torch::Tensor table) {
  check_half_layout(coords, neighbors, counts, types, box);
  const auto tab = read_table(table);
  const auto B = coords.size(1), N = coords.size(2), K = neighbors.size(2);
  auto out = torch::empty_like(coords);
  AT_DISPATCH_FLOATING_TYPES(coords.scalar_type(), "kalj_half_forces", [&] {
    half_pair_kernel<scalar_t, false>(coords.data_ptr<scalar_t>(), neighbors.data_ptr<HalfIndex>(),
                               counts.data_ptr<HalfIndex>(), types.data_ptr<int64_t>(),
                               box.data_ptr<scalar_t>(), tab, B, N, K, out.data_ptr<scalar_t>(),
                               nullptr, nullptr, nullptr);
  });
  return out;
}

std::vector<torch::Tensor> half_energy_virial(torch::Tensor coords, torch::Tensor neighbors,
                                              torch::Tensor counts, torch::Tensor types,
                                              torch::Tensor box, torch::Tensor table) {
  check_half_layout(coords, neighbors, counts, types, box);
  const auto tab = read_table(table);
  const auto B = coords.size(1), N = coords.size(2), K = neighbors.size(2);
  auto f = torch::empty_like(coords);
  auto energy = torch::empty({B, N}, coords.options());
  auto dopts = coords.options().dtype(torch::kFloat64);
  auto virial = torch::empty({B}, dopts);
  auto min_ratio = torch::empty({B}, dopts);
  AT_DISPATCH_FLOATING_TYPES(coords.scalar_type(), "kalj_half_energy_virial", [&] {
    half_pair_kernel<scalar_t, true>(coords.data_ptr<scalar_t>(), neighbors.data_ptr<HalfIndex>(),
                               counts.data_ptr<HalfIndex>(), types.data_ptr<int64_t>(),
                               box.data_ptr<scalar_t>(), tab, B, N, K, f.data_ptr<scalar_t>(),
                               energy.data_ptr<scalar_t>(), virial.data_ptr<double>(),
                               min_ratio.data_ptr<double>());
  });
  return {f, energy, virial.to(coords.scalar_type()), min_ratio.to(coords.scalar_type())};
}

// The neighbour-list rebuild of the flagged systems (rebuild_half) and the half-list forces
// (half_forces) in one call.  Where a system is one force chunk (N <= 2048) each system's task
// rebuilds it if flagged and then computes its forces: one parallel region per step for the
// batch, the rebuilds spread over the threads with the force work.  Results are those of
// rebuild_half followed by half_forces.  Returns (forces (3, B, N), longest (B,) as
// rebuild_half); where a system overflowed its rows (longest > K) or is not finite (-1) its
// forces are meaningless and the caller rebuilds (or stops) and recomputes them.
std::vector<torch::Tensor> rebuild_half_forces(torch::Tensor coords, torch::Tensor images,
                                               torch::Tensor reference, torch::Tensor types,
                                               torch::Tensor box, torch::Tensor systems,
                                               torch::Tensor neighbors, torch::Tensor counts,
                                               torch::Tensor list_sq, double r_max,
                                               torch::Tensor table) {
  check_half_layout(coords, neighbors, counts, types, box);
  const auto B = coords.size(1), N = coords.size(2), K = neighbors.size(2);
  if (half_chunk_rows(N) < N) {  // several chunks per system: the two calls
    auto longest = rebuild_half(coords, images, reference, types, box, systems, neighbors,
                                counts, list_sq, r_max);
    return {half_forces(coords, neighbors, counts, types, box, table), longest};
  }
  for (const auto* t : {&images, &reference, &systems})
    TORCH_CHECK(t->is_contiguous(), "rebuild_half_forces needs contiguous tensors");
  TORCH_CHECK(images.scalar_type() == torch::kInt64 && systems.scalar_type() == torch::kBool,
              "images must be int64 and systems bool");
  TORCH_CHECK(systems.numel() == B && reference.sizes() == coords.sizes() &&
                  images.sizes() == coords.sizes(),
              "inconsistent shapes in rebuild_half_forces");
  const auto tab = read_table(table);
  auto lsq = list_sq.to(torch::kFloat64).contiguous();
  auto longest = torch::zeros({B}, torch::TensorOptions().dtype(torch::kInt64));
  auto out = torch::empty_like(coords);
  int64_t* lo = longest.data_ptr<int64_t>();
  const bool* sel = systems.data_ptr<bool>();
  AT_DISPATCH_FLOATING_TYPES(coords.scalar_type(), "kalj_rebuild_half_forces", [&] {
    scalar_t* r = coords.data_ptr<scalar_t>();
    scalar_t* ref = reference.data_ptr<scalar_t>();
    int64_t* img = images.data_ptr<int64_t>();
    const scalar_t* L = box.data_ptr<scalar_t>();
    HalfIndex* counts_p = counts.data_ptr<HalfIndex>();
    HalfIndex* neighbors_p = neighbors.data_ptr<HalfIndex>();
    const int64_t* types_p = types.data_ptr<int64_t>();
    const double* lsq_p = lsq.data_ptr<double>();
    auto before = [&](int64_t b) {
      if (sel[b])
        lo[b] = rebuild_system<scalar_t>(b, B, N, K, r, ref, img, L, types_p, lsq_p, r_max,
                                         neighbors_p, counts_p);
    };
    half_pair_kernel<scalar_t, false>(r, neighbors_p, counts_p, types_p, L, tab, B, N, K,
                                      out.data_ptr<scalar_t>(), nullptr, nullptr, nullptr,
                                      before);
  });
  return {out, longest};
}

// Velocities (3, B, N) scaled in place by the factor of their system, v *= scale[b] (the
// product torch's ``velocities * scale.view(1, -1, 1)`` computes, element for element), on one
// thread below kElementwiseGrain particles (no fork-join for a small batch).
void scale_velocities(torch::Tensor velocities, torch::Tensor scale) {
  TORCH_CHECK(velocities.device().is_cpu() && velocities.dim() == 3 &&
                  velocities.size(0) == 3 && velocities.is_contiguous(),
              "velocities must be a contiguous CPU tensor (3, B, N)");
  const auto B = velocities.size(1), N = velocities.size(2), BN = B * N;
  TORCH_CHECK(scale.numel() == B && scale.scalar_type() == velocities.scalar_type() &&
                  scale.is_contiguous(),
              "scale must be (B,) with the dtype of velocities");
  AT_DISPATCH_FLOATING_TYPES(velocities.scalar_type(), "kalj_scale_velocities", [&] {
    scalar_t* v = velocities.data_ptr<scalar_t>();
    const scalar_t* s = scale.data_ptr<scalar_t>();
    const int64_t systems_per_task =
        std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(N, 1));
    at::parallel_for(0, B, systems_per_task, [&](int64_t begin, int64_t end) {
      for (int d = 0; d < 3; ++d)
        for (int64_t b = begin; b < end; ++b) {
          scalar_t* q = v + d * BN + b * N;
          const scalar_t factor = s[b];
          for (int64_t i = 0; i < N; ++i) q[i] = q[i] * factor;
        }
    });
  });
}

// Second half of velocity Verlet in place, v += dt/2 F, fused with the kinetic energy
// K_b = sum v^2 / 2 of each system (float64, summed over particles in index order, components
// added first: independent of the batch and of the thread count).
torch::Tensor kick_kinetic(torch::Tensor velocities, torch::Tensor forces, torch::Tensor dt) {
  TORCH_CHECK(velocities.is_contiguous() && forces.is_contiguous() && dt.is_contiguous(),
              "kick_kinetic needs contiguous tensors");
  TORCH_CHECK(velocities.device().is_cpu() && velocities.dim() == 3 && velocities.size(0) == 3,
              "velocities must be a CPU tensor (3, B, N)");
  const auto B = velocities.size(1), N = velocities.size(2), BN = B * N;
  auto kinetic = torch::empty({B}, velocities.options().dtype(torch::kFloat64));
  AT_DISPATCH_FLOATING_TYPES(velocities.scalar_type(), "kalj_kick_kinetic", [&] {
    scalar_t* v = velocities.data_ptr<scalar_t>();
    const scalar_t* f = forces.data_ptr<scalar_t>();
    const scalar_t* h = dt.data_ptr<scalar_t>();
    double* k = kinetic.data_ptr<double>();
    const int64_t systems_per_task =
        std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(N, 1));
    at::parallel_for(0, B, systems_per_task, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const scalar_t half = scalar_t(0.5) * h[b];
        double sum = 0;
        for (int64_t i = b * N; i < (b + 1) * N; ++i) {
          double s = 0;
          for (int d = 0; d < 3; ++d) {
            const int64_t q = d * BN + i;
            v[q] += half * f[q];
            s += double(v[q]) * double(v[q]);
          }
          sum += s;
        }
        k[b] = 0.5 * sum;
      }
    });
  });
  return kinetic;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "tbotan native CPU kernels for the KALJ shifted-force potential";
  m.def("forces", &forces, "pair forces over dense neighbour rows");
  m.def("energy_virial", &energy_virial,
        "forces, per-particle energies, virial and min r/sigma over dense neighbour rows");
  m.def("build_neighbors", &build_neighbors, "dense Verlet neighbour lists from a cell list");
  m.def("kick_drift_check", &kick_drift_check,
        "first velocity-Verlet half step in place, and the neighbour-list displacement check");
  m.def("build_half_neighbors", &build_half_neighbors,
        "half neighbour lists (each pair once, A then B neighbours per row) from a cell list");
  m.def("rebuild_half", &rebuild_half,
        "wrap, reset the reference and rebuild the half lists of flagged systems, in place");
  m.def("half_forces", &half_forces, "pair forces over half lists (Newton's third law)");
  m.def("half_energy_virial", &half_energy_virial,
        "forces, per-particle energies, virial and min r/sigma over half lists");
  m.def("kick_kinetic", &kick_kinetic,
        "second velocity-Verlet half step in place, and the kinetic energy of each system");
  m.def("half_chunk_rows", &half_chunk_rows, "rows per accumulation chunk of the half lists");
  m.def("rebuild_half_forces", &rebuild_half_forces,
        "rebuild_half of the flagged systems and half_forces of all, one task per system");
  m.def("scale_velocities", &scale_velocities,
        "velocities scaled in place by a factor per system");
  m.def(
      "simd_available",
      [] {
#if defined(__AVX512F__) || defined(TBOTAN_AVX2_ROWS)
        return true;
#else
        return false;
#endif
      },
      "whether the build has explicitly vectorised loops (AVX-512, or AVX2 force rows and "
      "list appends)");
  m.def(
      "use_simd", [](bool on) { simd_on.store(on); },
      "switch the explicitly vectorised loops on or off (for comparisons in one build)");
}
