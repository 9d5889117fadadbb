// Barrier cost per step on one GPU (bench/barrier.py builds and runs this; docs/barriers.md).
//
// The generated CUDA source of bench/barrier.py's kernel module is included first, so what is timed
// is ringgen's own rg_barrier_wait (templates/common/barrier.c.j2), not a copy. Against it, the same
// loop over cooperative groups' grid.sync(), compiled in the same program and launched cooperatively.
//
// Each block is one party: thread 0 arrives and waits, the block's other threads wait at
// __syncthreads, as a ring kernel's block would around a step. Block 0's thread 0 reads %globaltimer
// (ns) and clock64() after every step; the per-step time is the difference between two consecutive
// steps, in ns. Output: one JSON object per line: {"kind", "blocks", "steps", "ns": [...]} (the
// per-step times, as integers, from the SM cycle counter scaled by the run's globaltimer span).
#include "barrier_gen.cu"

#include <cooperative_groups.h>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace cg = cooperative_groups;

#define CHECK(x)                                                                              \
    do {                                                                                      \
        cudaError_t e_ = (x);                                                                 \
        if (e_ != cudaSuccess) {                                                              \
            std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            std::exit(2);                                                                     \
        }                                                                                     \
    } while (0)

__device__ __forceinline__ unsigned long long rg_bench_globaltimer()
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

extern "C" __global__ void rg_bench_ringgen(rg_barrier* b, rg_u32 parties, int steps,
                                            long long* cycles, unsigned long long* span,
                                            rg_u32* stop, int* status)
{
    unsigned long long t0 = 0;
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        t0 = rg_bench_globaltimer();
    }
    for (int s = 0; s < steps; ++s) {
        __syncthreads();
        if (threadIdx.x == 0) {
            const int st = rg_barrier_wait(b, parties, stop);
            if (st != RG_STATUS_NONE) {
                atomicExch(status, st);
            }
        }
        __syncthreads();
        if (blockIdx.x == 0 && threadIdx.x == 0) {
            cycles[s] = clock64();
        }
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        span[0] = t0;
        span[1] = rg_bench_globaltimer();
    }
}

extern "C" __global__ void rg_bench_grid_sync(int steps, long long* cycles, unsigned long long* span)
{
    cg::grid_group grid = cg::this_grid();
    unsigned long long t0 = 0;
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        t0 = rg_bench_globaltimer();
    }
    for (int s = 0; s < steps; ++s) {
        grid.sync();
        if (blockIdx.x == 0 && threadIdx.x == 0) {
            cycles[s] = clock64();
        }
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        span[0] = t0;
        span[1] = rg_bench_globaltimer();
    }
}

static void report(const char* kind, int blocks, int steps, const std::vector<long long>& cyc,
                   const unsigned long long* span)
{
    // cycles -> ns: the run's whole globaltimer span over its whole cycle span (steps 0..n-1).
    const double ns_per_cycle =
        (double)(span[1] - span[0]) / (double)(cyc[steps - 1] - cyc[0] > 0 ? cyc[steps - 1] - cyc[0] : 1);
    std::printf("{\"kind\": \"%s\", \"blocks\": %d, \"steps\": %d, \"span_ns\": %llu, \"ns\": [", kind,
                blocks, steps, span[1] - span[0]);
    for (int s = 1; s < steps; ++s) {
        std::printf("%s%lld", s > 1 ? ", " : "", (long long)((cyc[s] - cyc[s - 1]) * ns_per_cycle + 0.5));
    }
    std::printf("]}\n");
}

int main(int argc, char** argv)
{
    const int steps = argc > 1 ? std::atoi(argv[1]) : 10000;
    const int threads = 128;
    std::vector<int> counts;
    for (int i = 2; i < argc; ++i) {
        counts.push_back(std::atoi(argv[i]));
    }
    if (counts.empty()) {
        counts = {2, 4, 8, 16, 32, 64, 132};
    }
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    int per_sm = 0;
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, rg_bench_ringgen, threads, 0));
    int per_sm_grid = 0;
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm_grid, rg_bench_grid_sync, threads, 0));
    std::printf("{\"device\": \"%s\", \"sms\": %d, \"resident_per_sm\": %d, \"resident_per_sm_grid\": %d}\n",
                prop.name, prop.multiProcessorCount, per_sm, per_sm_grid);
    rg_barrier* b;
    rg_u32* stop;
    int* status;
    long long* cycles;
    unsigned long long* span;
    CHECK(cudaMalloc(&b, sizeof(rg_barrier)));
    CHECK(cudaMalloc(&stop, sizeof(rg_u32)));
    CHECK(cudaMalloc(&status, sizeof(int)));
    CHECK(cudaMalloc(&cycles, sizeof(long long) * steps));
    CHECK(cudaMalloc(&span, 2 * sizeof(unsigned long long)));
    std::vector<long long> host(steps);
    unsigned long long hspan[2];
    for (int blocks : counts) {
        if (blocks > prop.multiProcessorCount * per_sm || blocks > prop.multiProcessorCount * per_sm_grid) {
            std::fprintf(stderr, "%d blocks cannot all be resident: skipped\n", blocks);
            continue;
        }
        for (int rep = 0; rep < 2; ++rep) { // the first run of each is a warm-up
            CHECK(cudaMemset(b, 0, sizeof(rg_barrier)));
            CHECK(cudaMemset(stop, 0, sizeof(rg_u32)));
            CHECK(cudaMemset(status, 0, sizeof(int)));
            CHECK(cudaMemset(cycles, 0xff, sizeof(long long) * steps));
            rg_u32 parties = (rg_u32)blocks;
            int n = steps;
            void* args[] = {&b, &parties, &n, &cycles, &span, &stop, &status};
            // Launched cooperatively too, so the runtime refuses a grid that is not all resident.
            CHECK(cudaLaunchCooperativeKernel((void*)rg_bench_ringgen, blocks, threads, args, 0, 0));
            CHECK(cudaGetLastError());
            CHECK(cudaDeviceSynchronize());
            int hstatus = 0;
            CHECK(cudaMemcpy(&hstatus, status, sizeof(int), cudaMemcpyDeviceToHost));
            if (hstatus != 0) {
                std::fprintf(stderr, "rg_barrier_wait returned %d at %d blocks\n", hstatus, blocks);
                return 3;
            }
            rg_barrier hb;
            CHECK(cudaMemcpy(&hb, b, sizeof hb, cudaMemcpyDeviceToHost));
            if (hb.generation != (rg_u32)steps || hb.count != 0u || hb.broken != 0u) {
                std::fprintf(stderr, "barrier words after the run: generation %u (want %d), count %u, broken %u\n",
                             hb.generation, steps, hb.count, hb.broken);
                return 4;
            }
            CHECK(cudaMemcpy(host.data(), cycles, sizeof(long long) * steps, cudaMemcpyDeviceToHost));
            CHECK(cudaMemcpy(hspan, span, sizeof hspan, cudaMemcpyDeviceToHost));
            if (rep == 1) {
                report("ringgen", blocks, steps, host, hspan);
            }
        }
        for (int rep = 0; rep < 2; ++rep) {
            CHECK(cudaMemset(cycles, 0xff, sizeof(long long) * steps));
            int n = steps;
            void* args[] = {&n, &cycles, &span};
            CHECK(cudaLaunchCooperativeKernel((void*)rg_bench_grid_sync, blocks, threads, args, 0, 0));
            CHECK(cudaGetLastError());
            CHECK(cudaDeviceSynchronize());
            CHECK(cudaMemcpy(host.data(), cycles, sizeof(long long) * steps, cudaMemcpyDeviceToHost));
            CHECK(cudaMemcpy(hspan, span, sizeof hspan, cudaMemcpyDeviceToHost));
            if (rep == 1) {
                report("grid_sync", blocks, steps, host, hspan);
            }
        }
    }
    return 0;
}
