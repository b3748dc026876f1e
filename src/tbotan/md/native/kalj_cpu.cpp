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

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

constexpr int64_t kGrain = 512;  // rows per task: small systems run on one thread

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
    at::parallel_for(0, BN, 16384, [&](int64_t begin, int64_t end) {
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

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "tbotan native CPU kernels for the KALJ shifted-force potential";
  m.def("forces", &forces, "pair forces over dense neighbour rows");
  m.def("energy_virial", &energy_virial,
        "forces, per-particle energies, virial and min r/sigma over dense neighbour rows");
  m.def("build_neighbors", &build_neighbors, "dense Verlet neighbour lists from a cell list");
  m.def("kick_drift_check", &kick_drift_check,
        "first velocity-Verlet half step in place, and the neighbour-list displacement check");
}
