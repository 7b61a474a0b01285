// CPU kernels of dfn_jax.ops.dynamic_local_filter, as XLA FFI handlers (float32).
//
// Compiled on first use by dfn_jax/ops/_cpu_kernels/__init__.py and called through
// jax.ffi.ffi_call from dfn_jax/ops/_local_filter.py, which documents the three ops:
//
//   filter   F(x, f) -> out[p, c]      = sum_t f[p, (c,) t] * x[p + o_t, c]
//   adjoint  G(g, f) -> gx[q, c]       = sum_t f[q - o_t, (c,) t] * g[q - o_t, c]
//   outer    H(g, x) -> gf[p, (c,) t]  = g[p, c] * x[p + o_t, c]   (summed over c if shared)
//
// with tap t = i * kw + j at offset o_t = (i - kh/2, j - kw/2) and zeros outside the image, and a
// fourth handler for the backward pass of F when both its arguments are differentiated:
// (G(g, f), H(g, x)) from (g, x, f).
//
// Layouts: images [..., H, W, C]; filters [..., H, W, T] (shared by the channels) or
// [..., H, W, C, T] (per channel), T = kh * kw; every dimension before H is a batch dimension
// (so that jax.vmap can add leading axes). The per-channel case is told apart by the filter rank.
//
// Speed (measured on a 2-core AVX-512 machine; see benchmarks/dynamic_filter.py): each kernel reads
// the large per-pixel-tap operand once, in memory order, and is vectorised over the kw taps of a
// window row (16-lane GCC vectors; kw > 16 takes several):
// * F: per pixel, a dot product of its filter with its window, read from a zero-padded,
//   channel-planar copy of the image rows (every window row is one contiguous load);
// * G: source row by source row (scatter form): each pixel's taps are multiplied by its
//   gradient and added to a sliding register window per window row, whose finished column goes
//   to the output row it belongs to;
// * H: per pixel, gradient times window, stored in place;
// * G and H together (one channel): G's scatter and H's stores pixel by pixel in one loop, so
//   that the filter reads overlap the filter-gradient writes (measured: forward+backward 15-20%
//   faster than the two kernels one after the other, which each take a pass over memory);
// * F and G with filters shared by many channels (where it takes fewer operations): vectorised
//   over the channels instead, tap by tap, from a zero-padded channels-last copy.
// The usual kernel heights (odd, up to 13) are compile-time constants, so that every window row
// has its own registers. Work is split over (batch element, band of rows) on the FFI intra-op
// thread pool.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "xla/ffi/api/ffi.h"


namespace ffi = xla::ffi;

namespace {

// ---------------------------------------------------------------------------------------------
// 16-lane vectors (GCC/Clang vector extensions: AVX-512 registers where the CPU has them, pairs
// of AVX2 registers or quadruples of SSE/NEON ones otherwise).

constexpr int64_t kLanes = 16;
constexpr int64_t kMaxChunks = 4;  // kw <= 64
constexpr int64_t kMaxRows = 64;   // kh <= 64
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t Mask __attribute__((vector_size(kLanes * sizeof(int32_t))));
typedef float Half __attribute__((vector_size(kLanes / 2 * sizeof(float))));
typedef float Quarter __attribute__((vector_size(kLanes / 4 * sizeof(float))));

// Unaligned access through a float vector type: unlike memcpy, it may only alias floats, so the
// compiler need not reload integers (shapes, strides) after every store.
typedef float UnalignedVec __attribute__((vector_size(kLanes * sizeof(float)), aligned(4)));

inline Vec Load(const float* p) { return *reinterpret_cast<const UnalignedVec*>(p); }

inline void Store(float* p, Vec v) { *reinterpret_cast<UnalignedVec*>(p) = v; }

inline Vec Splat(float s) { return Vec{s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s}; }

// All lanes below n set (n >= kLanes: all lanes).
inline Mask LanesBelow(int64_t n) {
  const Mask iota = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  return iota < static_cast<int32_t>(std::min(n, kLanes));
}

// Zeroes the lanes outside `mask` bitwise, so NaN or inf in them cannot leak into a sum.
inline Vec Keep(Vec v, Mask mask) { return reinterpret_cast<Vec>(reinterpret_cast<Mask>(v) & mask); }

// Lane 0, read from the register (an element access made GCC store the vector to the stack).
inline float First(Vec v) { return __builtin_shufflevector(v, v, 0, 1, 2, 3)[0]; }

inline float Sum(Vec v) {
  Half h = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
           __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  Quarter q = __builtin_shufflevector(h, h, 0, 1, 2, 3) + __builtin_shufflevector(h, h, 4, 5, 6, 7);
  return (q[0] + q[2]) + (q[1] + q[3]);
}

// Lane k takes lane k + 1 of `lo`, the last lane takes lane 0 of `hi`.
inline Vec ShiftDown(Vec lo, Vec hi) {
  return __builtin_shufflevector(lo, hi, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
}

// ---------------------------------------------------------------------------------------------
// Shapes.

struct Geometry {
  int64_t batch = 1, h = 0, w = 0, c = 0, kh = 0, kw = 0, taps = 0;
  bool per_channel = false;

  int64_t ph() const { return kh / 2; }
  int64_t pw() const { return kw / 2; }
  int64_t chunks() const { return (kw + kLanes - 1) / kLanes; }
  // Filter values per pixel: T, or C * T per channel.
  int64_t filter_size() const { return per_channel ? c * taps : taps; }
  int64_t pixels() const { return batch * h * w; }
};

std::string DimsString(ffi::Span<const int64_t> dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// Reads the geometry from an image [..., H, W, C] and a filter tensor [..., H, W, (C,) T].
ffi::Error MakeGeometry(ffi::Span<const int64_t> image, ffi::Span<const int64_t> filters,
                        int64_t kh, int64_t kw, Geometry* geo) {
  const size_t rank = image.size();
  const std::string shapes =
      " (image " + DimsString(image) + ", filters " + DimsString(filters) + ", kernel " +
      std::to_string(kh) + "x" + std::to_string(kw) + ")";
  if (kh < 1 || kw < 1 || kh % 2 == 0 || kw % 2 == 0 || kw > kLanes * kMaxChunks ||
      kh > kMaxRows) {
    return ffi::Error::InvalidArgument("dfn_jax local filter: unsupported kernel size" + shapes);
  }
  if (rank < 3 || (filters.size() != rank && filters.size() != rank + 1)) {
    return ffi::Error::InvalidArgument("dfn_jax local filter: bad ranks" + shapes);
  }
  geo->per_channel = filters.size() == rank + 1;
  geo->batch = 1;
  for (size_t i = 0; i + 3 < rank; ++i) {
    if (filters[i] != image[i]) {
      return ffi::Error::InvalidArgument("dfn_jax local filter: batch mismatch" + shapes);
    }
    geo->batch *= image[i];
  }
  geo->h = image[rank - 3];
  geo->w = image[rank - 2];
  geo->c = image[rank - 1];
  geo->kh = kh;
  geo->kw = kw;
  geo->taps = kh * kw;
  const bool match = filters[rank - 3] == geo->h && filters[rank - 2] == geo->w &&
                     filters.back() == geo->taps &&
                     (!geo->per_channel || filters[rank - 1] == geo->c);
  if (!match) {
    return ffi::Error::InvalidArgument("dfn_jax local filter: shape mismatch" + shapes);
  }
  return ffi::Error::Success();
}

// ---------------------------------------------------------------------------------------------
// Work splitting over the FFI intra-op thread pool.

// Runs fn(0) ... fn(n - 1) on the calling thread and up to `workers - 1` pool tasks, which claim
// units from a shared counter. The caller works too (XLA runs custom calls on a pool thread, so a
// sleeping caller would leave a core idle), and so never depends on the pool making progress; it
// waits for the units, not for the tasks: a task that starts late finds nothing left and returns
// without touching `fn`. The caller spins for a while before it sleeps: the other units are
// usually about to finish, and waking a sleeping thread took 20-40 us (measured), 5-10% of a call.
template <typename Fn>
void ParallelFor(ffi::ThreadPool& pool, int64_t workers, int64_t n, const Fn& fn) {
  if (workers <= 1 || n <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  struct State {
    std::atomic<int64_t> next{0}, done{0};
    std::mutex mu;
    std::condition_variable cv;
  };
  auto state = std::make_shared<State>();
  const Fn* body = &fn;
  auto drain = [state, body, n]() {
    for (int64_t i; (i = state->next.fetch_add(1)) < n;) {
      (*body)(i);
      if (state->done.fetch_add(1) + 1 == n) {
        std::lock_guard<std::mutex> lock(state->mu);
        state->cv.notify_all();
      }
    }
  };
  for (int64_t t = 1; t < std::min(workers, n); ++t) {
    auto task = drain;
    pool.Schedule(std::move(task));
  }
  drain();
  const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
  while (state->done.load() != n && std::chrono::steady_clock::now() < spin_until) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->done.load() == n; });
}

// Units of work: (batch element, band of rows). Whole images when there are enough of them;
// otherwise bands, so that a single large image still uses every core.
struct Bands {
  int64_t per_image, rows;
};

Bands SplitRows(const Geometry& g, int64_t workers) {
  const int64_t want = 2 * std::max<int64_t>(workers, 1);
  // At least kh rows a band: G reads kh - 1 rows of filters beyond its band.
  const int64_t most = std::max<int64_t>(1, g.h / g.kh);
  int64_t per_image = std::min(most, std::max<int64_t>(1, (want + g.batch - 1) / g.batch));
  const int64_t rows = (g.h + per_image - 1) / per_image;
  return {(g.h + rows - 1) / rows, rows};
}

// Calls fn(b, r0, r1) for every band [r0, r1) of rows of every batch element b, on the pool.
template <typename Fn>
void ForEachBand(ffi::ThreadPool& pool, const Geometry& g, const Fn& fn) {
  if (g.pixels() == 0 || g.c == 0) return;
  const int64_t workers = pool.num_threads();
  const Bands bands = SplitRows(g, workers);
  ParallelFor(pool, workers, g.batch * bands.per_image, [&](int64_t unit) {
    const int64_t b = unit / bands.per_image;
    const int64_t r0 = (unit % bands.per_image) * bands.rows;
    fn(b, r0, std::min(g.h, r0 + bands.rows));
  });
}

// Zero-padded, channel-planar copy of image rows [r0 - ph, r1 + ph) of batch element b: plane c
// row r column u holds x[b, r0 - ph + r, u - pw, c] (zero outside the image), so the window of
// output pixel (y, x) starts at data + c * plane + (y - r0) * stride + x. The hot loops get it by
// value (a pointer and two strides), and the geometry by value too: locals cannot alias the
// floats the loops store, so the compiler keeps them in registers.
struct Window {
  const float* data;
  int64_t stride, plane;
};

Window FillPlanes(const float* image, const Geometry& g, int64_t b, int64_t r0, int64_t r1,
                  std::vector<float>* buffer) {
  const int64_t ph = g.ph(), pw = g.pw();
  const int64_t stride = g.w + 2 * pw, plane = (r1 - r0 + 2 * ph) * stride;
  // kLanes of slack: full-vector loads of the last window row may read past the last plane.
  buffer->assign(g.c * plane + kLanes, 0.0f);
  float* data = buffer->data();
  for (int64_t y = std::max<int64_t>(0, r0 - ph); y < std::min(g.h, r1 + ph); ++y) {
    const float* src = image + (b * g.h + y) * g.w * g.c;
    float* dst = data + (y - r0 + ph) * stride + pw;
    if (g.c == 1) {
      std::memcpy(dst, src, g.w * sizeof(float));
      continue;
    }
    for (int64_t x = 0; x < g.w; ++x) {
      for (int64_t c = 0; c < g.c; ++c) dst[c * plane + x] = src[x * g.c + c];
    }
  }
  return {data, stride, plane};
}

// Filter loads: full-vector loads of the kw taps of a window row read up to kLanes - 1 floats past
// them. Inside the filter tensor that is harmless (the extra lanes are cleared, bitwise, before
// they count, so even NaN or inf there cannot leak), but not past its end: rows of pixels whose
// filters end within kLanes of the end take kSafe loads, which copy what lies inside first.
template <bool kSafe>
inline Vec LoadFilter(const float* p, const float* end) {
  if (!kSafe || p + kLanes <= end) return Load(p);
  float tmp[kLanes] = {};
  if (p < end) std::memcpy(tmp, p, (end - p) * sizeof(float));
  return Load(tmp);
}

// Whether full-vector loads of the filters of image row `row` (counted over the whole batch) may
// run past the end of the filter tensor.
inline bool NeedsSafeLoads(const Geometry& g, int64_t row) {
  return ((row + 1) * g.w * g.filter_size() + kLanes) > g.pixels() * g.filter_size();
}

// Lanes of the last kLanes-wide chunk of a window row that are taps (earlier chunks are full).
inline Mask LastChunkMask(const Geometry& g) { return LanesBelow(g.kw - (g.chunks() - 1) * kLanes); }

template <int kValue>
using Int = std::integral_constant<int, kValue>;

// Calls body(Int<v>{}) for the v in kValues equal to `value`; false if there is none.
template <int... kValues, typename Body>
bool Dispatch(int64_t value, const Body& body) {
  return ((value == kValues && (body(Int<kValues>{}), true)) || ...);
}

// Calls body(chunks) with the number of kLanes-wide chunks of a window row as a compile-time
// constant (Int<n>).
template <typename Body>
void WithChunks(const Geometry& g, const Body& body) {
  static_assert(kMaxChunks == 4);
  Dispatch<1, 2, 3, 4>(g.chunks(), body);
}

// Calls body(safe) with std::true_type or std::false_type.
template <typename Body>
void WithSafe(bool safe, const Body& body) {
  if (safe) {
    body(std::true_type{});
  } else {
    body(std::false_type{});
  }
}

// Calls body(kh, chunks) with compile-time constants: kh itself for the usual odd sizes up to 13
// with one chunk (registers for every window row), else 0 (kh at run time).
template <typename Body>
void WithRows(const Geometry& g, const Body& body) {
  auto one_chunk = [&](auto kh) { body(kh, Int<1>{}); };
  if (g.chunks() == 1 && Dispatch<1, 3, 5, 7, 9, 11, 13>(g.kh, one_chunk)) return;
  WithChunks(g, [&](auto chunks) { body(Int<0>{}, chunks); });
}

// ---------------------------------------------------------------------------------------------
// F and G for filters shared by many channels: vectorised over the channels instead of the taps
// (tap by tap, a broadcast filter value times a vector of channels), from a zero-padded
// channels-last copy of the image rows. Used where it takes fewer operations (UseChannelVectors):
// e.g. 32 channels and 5x5 filters, not 3 channels and 9x9 ones.

inline int64_t ChannelChunks(const Geometry& g) { return (g.c + kLanes - 1) / kLanes; }

bool UseChannelVectors(const Geometry& g) {
  if (g.per_channel || ChannelChunks(g) > kMaxChunks) return false;
  const int64_t per_tap = g.taps * (1 + 2 * ChannelChunks(g));  // per pixel, all channels
  const int64_t per_channel = g.c * (g.kh * g.chunks() * 3 + 12);
  return per_tap < per_channel;
}

// Rows [r0 - ph, r1 + ph) of batch element b, channels last, zero-padded by pw columns each side:
// pixel (y, u - pw) at data + (y - r0 + ph) * row + u * c.
struct Padded {
  const float* data;
  int64_t row;
};

Padded FillPadded(const float* image, const Geometry& g, int64_t b, int64_t r0, int64_t r1,
                  std::vector<float>* buffer) {
  const int64_t ph = g.ph(), row = (g.w + 2 * g.pw()) * g.c;
  buffer->assign((r1 - r0 + 2 * ph) * row + kLanes, 0.0f);  // slack: the last channel vector
  for (int64_t y = std::max<int64_t>(0, r0 - ph); y < std::min(g.h, r1 + ph); ++y) {
    std::memcpy(buffer->data() + (y - r0 + ph) * row + g.pw() * g.c,
                image + (b * g.h + y) * g.w * g.c, g.w * g.c * sizeof(float));
  }
  return {buffer->data(), row};
}

// Stores the c channels of acc at dst (the last vector partly).
template <int kCChunks>
inline void StoreChannels(float* dst, const Vec* acc, int64_t c) {
  for (int k = 0; k + 1 < kCChunks; ++k) Store(dst + k * kLanes, acc[k]);
  float tail[kLanes];
  Store(tail, acc[kCChunks - 1]);
  std::memcpy(dst + (kCChunks - 1) * kLanes, tail, (c - (kCChunks - 1) * kLanes) * sizeof(float));
}

// out[p, :] = sum_t f[p, t] * x[p + o_t, :] for the pixels of image row y.
template <int kCChunks>
void FilterChannelsRow(const float* f, float* out, const Padded xp, const Geometry g, int64_t p0,
                       int64_t y_local) {
  const int64_t c = g.c, kh = g.kh, kw = g.kw, taps = g.taps;
  for (int64_t xx = 0; xx < g.w; ++xx) {
    const float* fp = f + (p0 + xx) * taps;
    Vec acc[kCChunks] = {};
    for (int64_t i = 0; i < kh; ++i) {
      const float* row = xp.data + (y_local + i) * xp.row + xx * c;
      for (int64_t j = 0; j < kw; ++j) {
        const Vec scale = Splat(fp[i * kw + j]);
        for (int k = 0; k < kCChunks; ++k) acc[k] += scale * Load(row + j * c + k * kLanes);
      }
    }
    StoreChannels<kCChunks>(out + (p0 + xx) * c, acc, c);
  }
}

// gx[q, :] = sum_t f[q - o_t, t] * g[q - o_t, :] for the pixels of image row qy (gp: padded rows
// of the gradient for the band starting at r0).
template <int kCChunks>
void AdjointChannelsRow(const float* f, float* gx, const Padded gp, const Geometry g, int64_t b,
                        int64_t qy, int64_t r0) {
  const int64_t c = g.c, kw = g.kw, taps = g.taps, ph = g.ph(), pw = g.pw();
  const int64_t i_lo = std::max<int64_t>(0, qy + ph - (g.h - 1)), i_hi = std::min(g.kh, qy + ph + 1);
  for (int64_t qx = 0; qx < g.w; ++qx) {
    const int64_t j_lo = std::max<int64_t>(0, qx + pw - (g.w - 1)), j_hi = std::min(kw, qx + pw + 1);
    Vec acc[kCChunks] = {};
    for (int64_t i = i_lo; i < i_hi; ++i) {
      const int64_t sy = qy + ph - i;
      const float* f_row = f + (b * g.h + sy) * g.w * taps + i * kw;
      const float* g_row = gp.data + (sy - r0 + ph) * gp.row + pw * c;
      for (int64_t j = j_lo; j < j_hi; ++j) {
        const int64_t sx = qx + pw - j;
        const Vec scale = Splat(f_row[sx * taps + j]);
        for (int k = 0; k < kCChunks; ++k) acc[k] += scale * Load(g_row + sx * c + k * kLanes);
      }
    }
    StoreChannels<kCChunks>(gx + ((b * g.h + qy) * g.w + qx) * c, acc, c);
  }
}

void FilterChannelsBand(const float* x, const float* f, float* out, const Geometry& g, int64_t b,
                        int64_t r0, int64_t r1) {
  thread_local std::vector<float> buffer;
  const Padded xp = FillPadded(x, g, b, r0, r1, &buffer);
  Dispatch<1, 2, 3, 4>(ChannelChunks(g), [&](auto chunks) {
    for (int64_t y = r0; y < r1; ++y) {
      FilterChannelsRow<chunks()>(f, out, xp, g, (b * g.h + y) * g.w, y - r0);
    }
  });
}

void AdjointChannelsBand(const float* grad, const float* f, float* gx, const Geometry& g,
                         int64_t b, int64_t r0, int64_t r1) {
  thread_local std::vector<float> buffer;
  const Padded gp = FillPadded(grad, g, b, r0, r1, &buffer);
  Dispatch<1, 2, 3, 4>(ChannelChunks(g), [&](auto chunks) {
    for (int64_t qy = r0; qy < r1; ++qy) AdjointChannelsRow<chunks()>(f, gx, gp, g, b, qy, r0);
  });
}

// ---------------------------------------------------------------------------------------------
// F: out[p, c] = sum_t f[p, (c,) t] * x[p + o_t, c], one image row (pixels p0 ... p0 + w - 1).

template <int kKh, int kChunks, bool kSafe>
void FilterRow(const float* f, float* out, const Window win, const Geometry g, int64_t p0,
               const float* f_end) {
  const Mask last = LastChunkMask(g);
  const int64_t fs = g.filter_size(), kh = kKh ? kKh : g.kh, kw = g.kw;
  for (int64_t xx = 0; xx < g.w; ++xx) {
    const float* fp = f + (p0 + xx) * fs;
    for (int64_t c = 0; c < g.c; ++c) {
      const float* fc = g.per_channel ? fp + c * g.taps : fp;
      const float* wc = win.data + c * win.plane + xx;
      // Four independent sums over the window rows: one chain of kh fused multiply-adds would
      // make the latency, not the loads, the limit.
      Vec acc[4][kChunks] = {};
      auto add_row = [&](Vec* sum, int64_t i) {
        for (int k = 0; k < kChunks; ++k) {
          sum[k] += LoadFilter<kSafe>(fc + i * kw + k * kLanes, f_end) *
                    Load(wc + i * win.stride + k * kLanes);
        }
      };
      int64_t i = 0;
      for (; i + 4 <= kh; i += 4) {
        add_row(acc[0], i);
        add_row(acc[1], i + 1);
        add_row(acc[2], i + 2);
        add_row(acc[3], i + 3);
      }
      for (; i < kh; ++i) add_row(acc[0], i);
      Vec total[kChunks];
      for (int k = 0; k < kChunks; ++k) total[k] = (acc[0][k] + acc[1][k]) + (acc[2][k] + acc[3][k]);
      total[kChunks - 1] = Keep(total[kChunks - 1], last);
      for (int k = 1; k < kChunks; ++k) total[0] += total[k];
      out[(p0 + xx) * g.c + c] = Sum(total[0]);
    }
  }
}

void FilterBand(const float* x, const float* f, float* out, const Geometry& g, int64_t b,
                int64_t r0, int64_t r1) {
  if (UseChannelVectors(g)) return FilterChannelsBand(x, f, out, g, b, r0, r1);
  thread_local std::vector<float> planes;
  const Window win = FillPlanes(x, g, b, r0, r1, &planes);
  const float* f_end = f + g.pixels() * g.filter_size();
  WithRows(g, [&](auto kh, auto chunks) {
    for (int64_t y = r0; y < r1; ++y) {
      const Window row = {win.data + (y - r0) * win.stride, win.stride, win.plane};
      WithSafe(NeedsSafeLoads(g, b * g.h + y), [&](auto safe) {
        FilterRow<kh(), chunks(), safe()>(f, out, row, g, (b * g.h + y) * g.w, f_end);
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------
// H: gf[p, (c,) t] = g[p, c] * x[p + o_t, c], summed over c for shared filters.
//
// Written in place with full-vector stores, in increasing address order: a store that runs past a
// window row (or past the pixel) is overwritten by the next ones. Only pixels within kLanes floats
// of the end of their band go through a scratch buffer, so that no spill lands in another band
// (another thread's) or past the end of the tensor. (Measured: staging rows and copying them out,
// with ordinary or non-temporal stores, was no faster.)

template <int kKh, int kChunks>
void OuterRow(const float* grad, float* gf, float* spill, const Window win, const Geometry g,
              int64_t p0, int64_t band_end) {
  const int64_t fs = g.filter_size(), kh = kKh ? kKh : g.kh, kw = g.kw, taps = g.taps;
  const int64_t channels = g.c;
  for (int64_t xx = 0; xx < g.w; ++xx) {
    const int64_t p = p0 + xx;
    const bool direct = (p + 1) * fs + kLanes <= band_end;
    float* dst = direct ? gf + p * fs : spill;
    const float* gp = grad + p * channels;
    const float* wp = win.data + xx;
    if (g.per_channel) {  // channel by channel: a channel's spill lands in the next one
      for (int64_t c = 0; c < channels; ++c) {
        const Vec scale = Splat(gp[c]);
        for (int64_t i = 0; i < kh; ++i) {
          for (int k = 0; k < kChunks; ++k) {
            Store(dst + c * taps + i * kw + k * kLanes,
                  scale * Load(wp + c * win.plane + i * win.stride + k * kLanes));
          }
        }
      }
    } else {
      for (int64_t i = 0; i < kh; ++i) {
        for (int k = 0; k < kChunks; ++k) {
          const int64_t offset = i * win.stride + k * kLanes;
          Vec acc = Splat(gp[0]) * Load(wp + offset);
          for (int64_t c = 1; c < channels; ++c) {
            acc += Splat(gp[c]) * Load(wp + c * win.plane + offset);
          }
          Store(dst + i * kw + k * kLanes, acc);
        }
      }
    }
    if (!direct) std::memcpy(gf + p * fs, spill, fs * sizeof(float));
  }
}

void OuterBand(const float* grad, const float* x, float* gf, const Geometry& g, int64_t b,
               int64_t r0, int64_t r1) {
  thread_local std::vector<float> planes, spill;
  const Window win = FillPlanes(x, g, b, r0, r1, &planes);
  spill.resize(g.filter_size() + kLanes);
  const int64_t band_end = (b * g.h + r1) * g.w * g.filter_size();
  WithRows(g, [&](auto kh, auto chunks) {
    for (int64_t y = r0; y < r1; ++y) {
      const Window row = {win.data + (y - r0) * win.stride, win.stride, win.plane};
      OuterRow<kh(), chunks()>(grad, gf, spill.data(), row, g, (b * g.h + y) * g.w, band_end);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// G: gx[q, c] = sum_t f[q - o_t, (c,) t] * g[q - o_t, c].
//
// Source row by source row (scatter form), so that each pixel's taps are read once and in order.
// Window row i of source row s lands in output row q = s - ph + i; acc[i] holds its padded
// columns [sx, sx + kChunks * 16) in registers, and column sx is final after source column sx:
// it is added to the band's sums (AdjointSums: out points at row s - ph of column 0, `column`
// floats apart). kKh = 0: kh known at run time only.

// H's share of a fused pass over a source row (one channel): gf and the window of the row's
// first pixel, and how many of its pixels may store in place (the rest go through `spill`; see
// OuterRow).
struct OuterTarget {
  float* gf;
  float* spill;
  const float* window;
  int64_t stride, direct;
};

template <int kKh, int kChunks, bool kSafe, bool kOuter = false>
void AdjointSourceRow(const float* grad, const float* f, float* out, int64_t column,
                      const Geometry g, const float* f_end, OuterTarget h = {}) {
  const int64_t kh = kKh ? kKh : g.kh;
  const int64_t fs = g.filter_size(), kw = g.kw, channels = g.c, pw = g.pw();
  const Mask last = LastChunkMask(g);
  Vec acc[kKh ? kKh : kMaxRows][kChunks + 1];  // the extra (always zero) vector feeds the shift
  for (int64_t i = 0; i < kh; ++i) {
    for (int k = 0; k <= kChunks; ++k) acc[i][k] = Vec{};
  }
  for (int64_t sx = 0; sx < g.w + pw; ++sx) {
    if (sx < g.w) {
      const Vec scale = Splat(grad[sx * channels]);
      const float* taps = f + sx * fs;
#pragma GCC unroll 16
      for (int64_t i = 0; i < kh; ++i) {
        for (int k = 0; k < kChunks; ++k) {
          acc[i][k] += scale * LoadFilter<kSafe>(taps + i * kw + k * kLanes, f_end);
        }
        // Lanes past the last tap are always zero here; the products there are not (they read
        // the next taps), and may be NaN: cleared bitwise.
        acc[i][kChunks - 1] = Keep(acc[i][kChunks - 1], last);
      }
      if constexpr (kOuter) {  // H for the same pixel, while its filter loads are in flight
        float* dst = sx < h.direct ? h.gf + sx * fs : h.spill;
#pragma GCC unroll 16
        for (int64_t i = 0; i < kh; ++i) {
          for (int k = 0; k < kChunks; ++k) {
            Store(dst + i * kw + k * kLanes,
                  scale * Load(h.window + sx + i * h.stride + k * kLanes));
          }
        }
        if (sx >= h.direct) std::memcpy(h.gf + sx * fs, h.spill, fs * sizeof(float));
      }
    }
    if (sx >= pw) {
      float* sums = out + (sx - pw) * column;
#pragma GCC unroll 16
      for (int64_t i = 0; i < kh; ++i) sums[i] += First(acc[i][0]);
    }
#pragma GCC unroll 16
    for (int64_t i = 0; i < kh; ++i) {
      for (int k = 0; k < kChunks; ++k) acc[i][k] = ShiftDown(acc[i][k], acc[i][k + 1]);
    }
  }
}

// The sums of one band of G, column by column: channel c, column x, output row q at
// data[(c * w + x) * column + q - r0 + 2 * ph], with room for every row that the band's source
// rows reach (those outside the band are never written out). A source row's kh output rows are
// then kh consecutive floats, at offsets known when the kernel height is.
struct AdjointSums {
  float* data;
  int64_t column;
};

AdjointSums AdjointScratch(const Geometry& g, int64_t r0, int64_t r1) {
  thread_local std::vector<float> sums;
  const int64_t column = r1 - r0 + 4 * g.ph();
  sums.assign(g.c * g.w * column, 0.0f);
  return {sums.data(), column};
}

// Scatters source row s (all channels) of batch element b into `sums`.
template <int kKh, int kChunks>
void AdjointSource(const float* grad, const float* f, AdjointSums sums, const Geometry g,
                   int64_t b, int64_t r0, int64_t s, const float* f_end,
                   const OuterTarget* outer = nullptr) {
  const int64_t p0 = (b * g.h + s) * g.w;
  WithSafe(NeedsSafeLoads(g, b * g.h + s), [&](auto safe) {
    for (int64_t c = 0; c < g.c; ++c) {
      // Row q = s - ph + i of the sums of column 0.
      float* out = sums.data + c * g.w * sums.column + (s - r0 + g.ph());
      const float* fc = f + p0 * g.filter_size() + (g.per_channel ? c * g.taps : 0);
      if (outer) {  // one channel (BackwardBand)
        AdjointSourceRow<kKh, kChunks, safe(), true>(grad + p0, fc, out, sums.column, g, f_end,
                                                      *outer);
      } else {
        AdjointSourceRow<kKh, kChunks, safe()>(grad + p0 * g.c + c, fc, out, sums.column, g,
                                               f_end);
      }
    }
  });
}

// Writes the band's rows [r0, r1) of `sums` to gx (batch element b).
void WriteAdjoint(AdjointSums sums, float* gx, const Geometry& g, int64_t b, int64_t r0,
                  int64_t r1) {
  for (int64_t q = r0; q < r1; ++q) {
    float* dst = gx + (b * g.h + q) * g.w * g.c;
    const float* src = sums.data + (q - r0 + 2 * g.ph());
    for (int64_t x = 0; x < g.w; ++x) {
      for (int64_t c = 0; c < g.c; ++c) dst[x * g.c + c] = src[(c * g.w + x) * sums.column];
    }
  }
}

// Source rows that reach output rows [r0, r1).
inline int64_t FirstSource(const Geometry& g, int64_t r0) { return std::max<int64_t>(0, r0 - g.ph()); }
inline int64_t EndSource(const Geometry& g, int64_t r1) { return std::min(g.h, r1 + g.ph()); }

void AdjointBand(const float* grad, const float* f, float* gx, const Geometry& g, int64_t b,
                 int64_t r0, int64_t r1) {
  if (UseChannelVectors(g)) return AdjointChannelsBand(grad, f, gx, g, b, r0, r1);
  const float* f_end = f + g.pixels() * g.filter_size();
  const AdjointSums sums = AdjointScratch(g, r0, r1);
  WithRows(g, [&](auto kh, auto chunks) {
    for (int64_t s = FirstSource(g, r0); s < EndSource(g, r1); ++s) {
      AdjointSource<kh(), chunks()>(grad, f, sums, g, b, r0, s, f_end);
    }
  });
  WriteAdjoint(sums, gx, g, b, r0, r1);
}

// ---------------------------------------------------------------------------------------------
// G and H in one pass (both gradients of F), for one channel: pixel by pixel, G scatters the
// pixel's filter while H writes its filter gradient, so that the filter reads overlap the writes
// instead of taking a pass of their own. Other channel counts run the two one after the other.

void BackwardBand(const float* grad, const float* x, const float* f, float* gx, float* gf,
                  const Geometry& g, int64_t b, int64_t r0, int64_t r1) {
  if (UseChannelVectors(g) || g.c != 1) {  // one op after the other
    AdjointBand(grad, f, gx, g, b, r0, r1);
    return OuterBand(grad, x, gf, g, b, r0, r1);
  }
  thread_local std::vector<float> planes, spill;
  const Window win = FillPlanes(x, g, b, r0, r1, &planes);
  spill.resize(g.filter_size() + kLanes);
  const int64_t fs = g.filter_size();
  // Pixels p whose full-vector stores stay inside the band: (p + 1) * fs + kLanes <= its end.
  const int64_t last_direct = ((b * g.h + r1) * g.w * fs - kLanes) / fs;
  const float* f_end = f + g.pixels() * fs;
  const AdjointSums sums = AdjointScratch(g, r0, r1);
  WithRows(g, [&](auto kh, auto chunks) {
    for (int64_t s = FirstSource(g, r0); s < EndSource(g, r1); ++s) {
      if (s < r0 || s >= r1) {
        AdjointSource<kh(), chunks()>(grad, f, sums, g, b, r0, s, f_end);
        continue;
      }
      const int64_t p0 = (b * g.h + s) * g.w;
      const OuterTarget outer = {gf + p0 * fs, spill.data(), win.data + (s - r0) * win.stride,
                                 win.stride, std::clamp<int64_t>(last_direct - p0, 0, g.w)};
      AdjointSource<kh(), chunks()>(grad, f, sums, g, b, r0, s, f_end, &outer);
    }
  });
  WriteAdjoint(sums, gx, g, b, r0, r1);
}

// ---------------------------------------------------------------------------------------------
// FFI entry points.

using BandFn = void (*)(const float*, const float*, float*, const Geometry&, int64_t, int64_t,
                       int64_t);

// The three handlers: (a, b) -> out, split into bands. The filter shape is that of b (F, G) or of
// out (H, whose operands are both images).
template <BandFn kBand, bool kFiltersOut>
ffi::Error Run(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
               ffi::ResultBuffer<ffi::F32> out, int64_t kh, int64_t kw) {
  Geometry g;
  const auto filters = kFiltersOut ? out->dimensions() : b.dimensions();
  if (auto err = MakeGeometry(a.dimensions(), filters, kh, kw, &g); err.failure()) return err;
  if (kFiltersOut && !(a.dimensions() == b.dimensions())) {
    return ffi::Error::InvalidArgument("dfn_jax local filter: image and gradient shapes differ");
  }
  ForEachBand(pool, g, [&](int64_t batch, int64_t r0, int64_t r1) {
    kBand(a.typed_data(), b.typed_data(), out->typed_data(), g, batch, r0, r1);
  });
  return ffi::Error::Success();
}

constexpr auto kFilter = Run<FilterBand, false>;    // F(x, f)
constexpr auto kAdjoint = Run<AdjointBand, false>;  // G(g, f)
constexpr auto kOuter = Run<OuterBand, true>;       // H(g, x)

using F32Buffer = ffi::Buffer<ffi::F32>;

// (G(g, f), H(g, x)) from (g, x, f).
ffi::Error RunBackward(ffi::ThreadPool pool, F32Buffer grad, F32Buffer x, F32Buffer f,
                       ffi::ResultBuffer<ffi::F32> gx, ffi::ResultBuffer<ffi::F32> gf, int64_t kh,
                       int64_t kw) {
  Geometry g;
  if (auto err = MakeGeometry(grad.dimensions(), f.dimensions(), kh, kw, &g); err.failure()) {
    return err;
  }
  if (!(x.dimensions() == grad.dimensions()) || !(gx->dimensions() == grad.dimensions()) ||
      !(gf->dimensions() == f.dimensions())) {
    return ffi::Error::InvalidArgument("dfn_jax local filter backward: shapes differ");
  }
  ForEachBand(pool, g, [&](int64_t batch, int64_t r0, int64_t r1) {
    BackwardBand(grad.typed_data(), x.typed_data(), f.typed_data(), gx->typed_data(),
                 gf->typed_data(), g, batch, r0, r1);
  });
  return ffi::Error::Success();
}

auto Binding() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<F32Buffer>()
      .Arg<F32Buffer>()
      .Ret<F32Buffer>()
      .Attr<int64_t>("kh")
      .Attr<int64_t>("kw");
}

auto BackwardBinding() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<F32Buffer>()
      .Arg<F32Buffer>()
      .Arg<F32Buffer>()
      .Ret<F32Buffer>()
      .Ret<F32Buffer>()
      .Attr<int64_t>("kh")
      .Attr<int64_t>("kw");
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(DfnJaxLocalFilter, kFilter, Binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DfnJaxLocalFilterAdjoint, kAdjoint, Binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DfnJaxLocalFilterOuter, kOuter, Binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DfnJaxLocalFilterBackward, RunBackward, BackwardBinding());
