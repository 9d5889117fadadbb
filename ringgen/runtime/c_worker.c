/* c_worker.c -- the resident worker loop of ringgen's native CPU backend (backend="c").
 *
 * Shipped with ringgen; compiled once per generated kernel source by ringgen/runtime/c_native.py,
 * which decides everything through -D flags (no code is generated here):
 *   RG_C_SOURCE      the generated <name>.c, as a quoted path: types, prelude, handlers
 *   RG_C_HANDLER     rg_handle_<kernel>
 *   RG_C_IN          the input struct; RG_C_OUT the output struct (omitted: no output)
 *   RG_C_OUTBOX      rg_outbox_<kernel> when the handler takes an Outbox (then RG_C_LIMIT is its limit)
 *   RG_C_LIMIT       most outputs per input (1, or the kernel's Outbox limit)
 *   RG_C_IN_SLOT, RG_C_OUT_SLOT  queue slot sizes in bytes (a slot holds the struct, zero padded)
 *   RG_C_TELEMETRY   the launch option telemetry is on: every RG_C_TELEMETRY-th message (a power of
 *                    two) is timed into the telemetry buffer (ringgen/runtime/telemetry.py), and the
 *                    queue depths are sampled; without it the worker writes no telemetry at all
 *
 * The queue protocol is ringgen/protocol.py: rings of slots, two 64-bit counters per queue on their
 * own 128-byte lines (tail written only by the producer, head only by the consumer), publish =
 * write slots then release-store tail, consume = acquire-load tail, read, then release-store head.
 * The control block's line 0 is the host's (terminate word), the rest is this worker's.
 *
 * The worker is called from a host thread that released the GIL (ctypes), runs until the host asks
 * it to stop, and returns. Built with the strict flags of the C target (-ffp-contract=off, no
 * fast-math), so every float matches the reference bit for bit.
 */
#include RG_C_SOURCE

#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#define RG_C_LINE 128
#define RG_C_REASONS 16
#define RG_C_TERMINATE_DRAIN 1u
#define RG_C_TERMINATE_STOP_NOW 2u
#define RG_C_ACTIVE 2u
#define RG_C_TERMINATING 3u
#define RG_C_TERMINATED 4u
/* How long an idle worker polls its input queue before it yields its core, and until when it keeps
 * yielding before it sleeps (then 20 us doubling to 1 ms): a reply within microseconds when busy,
 * almost no CPU when idle, and on a 2-core machine the host thread always gets a core. */
#define RG_C_SPIN_NS 0ull
#define RG_C_YIELD_NS 2000000ull
#define RG_C_SLEEP_MIN_NS 20000ull
#define RG_C_SLEEP_MAX_NS 1000000ull
/* Messages handled between two publications of the counters (a batch is published at once). */
#define RG_C_PUBLISH_EVERY 256u

typedef struct rg_c_queue {
    rg_u64 tail;
    unsigned char pad0[RG_C_LINE - 8];
    rg_u64 head;
    unsigned char pad1[RG_C_LINE - 8];
} rg_c_queue;

typedef struct rg_c_control {
    rg_u32 terminate;
    unsigned char pad0[RG_C_LINE - 4];
    rg_u32 state;
    rg_u32 fault;
    rg_u64 heartbeat;
    rg_u64 processed;
    rg_u64 emitted;
    rg_u64 output_stalls;
    rg_u64 idle_spins;
    rg_u64 launches;
    unsigned char pad1[RG_C_LINE - 56];
    rg_u64 rejected[RG_C_REASONS];
} rg_c_control;

/* The layout must be ringgen.protocol.CONTROL_DTYPE's: a negative array size fails the build. */
typedef char rg_c_check_state[offsetof(rg_c_control, state) == 128 ? 1 : -1];
typedef char rg_c_check_launches[offsetof(rg_c_control, launches) == 176 ? 1 : -1];
typedef char rg_c_check_rejected[offsetof(rg_c_control, rejected) == 256 ? 1 : -1];
typedef char rg_c_check_queue[offsetof(rg_c_queue, head) == 128 ? 1 : -1];
typedef char rg_c_check_in_slot[sizeof(RG_C_IN) <= RG_C_IN_SLOT ? 1 : -1];
#ifdef RG_C_OUT
typedef char rg_c_check_out_slot[sizeof(RG_C_OUT) <= RG_C_OUT_SLOT ? 1 : -1];
#endif

#ifdef RG_C_TELEMETRY
/* The telemetry buffer: ringgen.runtime.telemetry.TELEMETRY_DTYPE, written only by this worker (plain
 * 64-bit stores, so the host's copy sees each count whole), read by the host while the worker runs. */
#define RG_C_TELE_SUB_BITS 5u
#define RG_C_TELE_MAX_MSB 40u
#define RG_C_TELE_BUCKETS ((RG_C_TELE_MAX_MSB - RG_C_TELE_SUB_BITS + 2u) << RG_C_TELE_SUB_BITS)
#define RG_C_TELE_DEPTH_SLOTS 256u
/* A queue-depth sample at most this often (ns), while the worker has work. */
#define RG_C_TELE_DEPTH_NS 1000000ull

typedef struct rg_c_telemetry {
    rg_u32 version;
    rg_u32 sub_bits;
    rg_u32 buckets;
    rg_u32 depth_slots;
    rg_u32 sample_every;
    rg_u32 pad0;
    rg_u64 depth_written;
    rg_u64 pad1[4];
    rg_u64 queue[RG_C_TELE_BUCKETS];
    rg_u64 handler[RG_C_TELE_BUCKETS];
    rg_u64 depth_t[RG_C_TELE_DEPTH_SLOTS];
    rg_u32 depth_in[RG_C_TELE_DEPTH_SLOTS];
    rg_u32 depth_out[RG_C_TELE_DEPTH_SLOTS];
} rg_c_telemetry;

typedef char rg_c_check_tele_queue[offsetof(rg_c_telemetry, queue) == 64 ? 1 : -1];
typedef char rg_c_check_tele_sample[((RG_C_TELEMETRY) & ((RG_C_TELEMETRY) - 1)) == 0 ? 1 : -1];

/* ringgen.runtime.telemetry.compute_bucket_index: linear below 2 * 2^SUB_BITS, then 2^SUB_BITS
 * buckets per power of two, the last bucket holding everything from 2^(MAX_MSB + 1) up. */
static rg_u32 rg_c_tele_bucket(rg_u64 v)
{
    if (v < (2ull << RG_C_TELE_SUB_BITS)) {
        return (rg_u32)v;
    }
    const rg_u32 msb = 63u - (rg_u32)__builtin_clzll(v);
    if (msb > RG_C_TELE_MAX_MSB) {
        return RG_C_TELE_BUCKETS - 1u;
    }
    const rg_u32 shift = msb - RG_C_TELE_SUB_BITS;
    return ((shift + 1u) << RG_C_TELE_SUB_BITS) + (rg_u32)(v >> shift) - (1u << RG_C_TELE_SUB_BITS);
}

static void rg_c_tele_count(rg_u64* hist, rg_u64 v)
{
    rg_u64* slot = hist + rg_c_tele_bucket(v);
    __atomic_store_n(slot, *slot + 1u, __ATOMIC_RELAXED);
}
#endif

#define rg_c_load_acq(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define rg_c_store_rel(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define rg_c_add(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)

static int rg_c_stop_now(rg_c_control* ctl)
{
    return rg_c_load_acq(&ctl->terminate) >= RG_C_TERMINATE_STOP_NOW;
}

/* One step of an idle wait. Spins on plain loads for RG_C_SPIN_NS, then yields the core on every poll
 * until RG_C_YIELD_NS, then sleeps, doubling. Yielding early matters where the host thread shares
 * this worker's core (a busy 2-core machine): a spinning worker would keep the host from sending
 * the next message until the scheduler preempts it, milliseconds later. */
typedef struct rg_c_backoff {
    rg_u64 polls;
    rg_u64 since_ns; /* when this wait started (0: not read yet) */
    rg_u64 sleep_ns;
} rg_c_backoff;

static void rg_c_backoff_reset(rg_c_backoff* b)
{
    b->polls = 0u;
    b->since_ns = 0u;
    b->sleep_ns = RG_C_SLEEP_MIN_NS;
}

static void rg_c_backoff_wait(rg_c_backoff* b)
{
    b->polls += 1u;
    if ((b->polls & 63u) != 0u) {
        return; /* a free poll; the clock is read every 64 */
    }
    const rg_u64 now = rg_c_now();
    if (b->since_ns == 0u) {
        b->since_ns = now;
    }
    const rg_u64 idle = now - b->since_ns;
    if (idle < RG_C_SPIN_NS) {
        return;
    }
    if (idle < RG_C_YIELD_NS) {
        sched_yield();
        return;
    }
    struct timespec ts;
    ts.tv_sec = 0;
    ts.tv_nsec = (long)b->sleep_ns;
    nanosleep(&ts, 0);
    b->sleep_ns = b->sleep_ns * 2u > RG_C_SLEEP_MAX_NS ? RG_C_SLEEP_MAX_NS : b->sleep_ns * 2u;
}

/* Runs the kernel until the host asks it to stop; returns the lifecycle it leaves (TERMINATED).
 *   ctl:      the control block (CONTROL_DTYPE)
 *   inq/in_ring/in_cap:    the input queue's counters, slots and capacity (a power of two)
 *   outq/out_ring/out_cap: the output queue's (unused when the kernel has no output)
 *   state:    the @rg.state struct, initialised by the host (or a dummy byte)
 *   tele:     the telemetry buffer, or 0 (only read when built with RG_C_TELEMETRY)
 *   sent_at:  the host's publication stamp of each timed input slot, at slot / RG_C_TELEMETRY
 *             (CLOCK_MONOTONIC ns), or 0 */
int rg_c_worker(rg_c_control* ctl, rg_c_queue* inq, const unsigned char* in_ring, rg_u64 in_cap,
                rg_c_queue* outq, unsigned char* out_ring, rg_u64 out_cap, void* state, void* tele,
                const rg_u64* sent_at)
{
    rg_u64 head = rg_c_load_acq(&inq->head); /* this worker is the input queue's only consumer */
    rg_u64 otail = rg_c_load_acq(&outq->tail); /* and the output queue's only producer */
    rg_u64 heartbeat = 0u;
    rg_u32* stop = &ctl->terminate;
    rg_c_backoff bo;
    int stopped = 0;
    (void)out_ring;
    (void)out_cap;
    (void)otail;
#ifdef RG_C_TELEMETRY
    rg_c_telemetry* tm = (rg_c_telemetry*)tele;
    rg_u64 depth_at = 0u; /* when the last depth sample was written */
#else
    (void)tele;
    (void)sent_at;
#endif
    rg_c_backoff_reset(&bo);
    rg_c_add(&ctl->launches, (rg_u64)1);
    rg_c_store_rel(&ctl->state, RG_C_ACTIVE);
    while (!stopped) {
        rg_c_add(&ctl->heartbeat, (rg_u64)1);
        heartbeat += 1u;
        const rg_u32 term = rg_c_load_acq(&ctl->terminate);
        if (term >= RG_C_TERMINATE_STOP_NOW) {
            break;
        }
        const rg_u64 tail = rg_c_load_acq(&inq->tail);
        if (tail == head) {
            if (term != 0u) {
                /* The host publishes its last tail before it asks to stop: look once more. */
                if (rg_c_load_acq(&inq->tail) == head) {
                    break;
                }
                continue;
            }
            rg_c_backoff_wait(&bo);
            if ((bo.polls & 1023u) == 0u) {
                rg_c_add(&ctl->idle_spins, (rg_u64)1024);
            }
            continue;
        }
        rg_c_backoff_reset(&bo);
#ifdef RG_C_TELEMETRY
        {
            const rg_u64 t = rg_c_now();
            if (t - depth_at >= RG_C_TELE_DEPTH_NS) {
                const rg_u64 w = tm->depth_written;
                const rg_u32 at = (rg_u32)(w & (RG_C_TELE_DEPTH_SLOTS - 1u));
                tm->depth_t[at] = t;
                tm->depth_in[at] = (rg_u32)(tail - head);
                tm->depth_out[at] = (rg_u32)(otail - rg_c_load_acq(&outq->head));
                rg_c_store_rel(&tm->depth_written, w + 1u); /* the sample before its count */
                depth_at = t;
            }
        }
#endif
        rg_u64 done = 0u;
        rg_u64 produced = 0u;
        while (head + done != tail) {
#ifdef RG_C_OUT
            /* Room for this message's outputs, reserved before it runs: never overwrite. */
            if (out_cap - (otail - rg_c_load_acq(&outq->head)) < (rg_u64)RG_C_LIMIT) {
                /* Publish what is done so far, so the host can drain it, then wait. */
                rg_c_store_rel(&outq->tail, otail);
                rg_c_store_rel(&inq->head, head + done);
                rg_c_add(&ctl->processed, done);
                rg_c_add(&ctl->emitted, produced);
                head += done;
                done = 0u;
                produced = 0u;
                rg_c_add(&ctl->output_stalls, (rg_u64)1);
                rg_c_backoff stall;
                rg_c_backoff_reset(&stall);
                while (out_cap - (otail - rg_c_load_acq(&outq->head)) < (rg_u64)RG_C_LIMIT) {
                    if (rg_c_stop_now(ctl)) {
                        stopped = 1;
                        break;
                    }
                    rg_c_backoff_wait(&stall);
                }
                if (stopped) {
                    break;
                }
            }
#endif
            RG_C_IN msg;
            memcpy(&msg, in_ring + ((head + done) & (in_cap - 1u)) * (rg_u64)RG_C_IN_SLOT, sizeof msg);
            rg_c_thread_id = (rg_u32)(head + done); /* the message's sequence number */
#ifdef RG_C_TELEMETRY
            /* Every RG_C_TELEMETRY-th message is timed: two clock reads per timed message. */
            const int timed = (((head + done) & (rg_u64)((RG_C_TELEMETRY) - 1)) == 0u);
            const rg_u64 started = timed ? rg_c_now() : 0u;
#endif
            int st;
#if defined(RG_C_OUTBOX)
            RG_C_OUTBOX ob;
            memset(&ob, 0, sizeof ob);
            st = RG_C_HANDLER(&msg, 0, state, &ob, stop);
            if (st >= 0) {
                for (rg_u32 j = 0u; j < ob.n; ++j) {
                    unsigned char* slot = out_ring + (otail & (out_cap - 1u)) * (rg_u64)RG_C_OUT_SLOT;
                    memset(slot, 0, RG_C_OUT_SLOT);
                    memcpy(slot, &ob.items[j], sizeof ob.items[j]);
                    otail += 1u;
                    produced += 1u;
                }
            }
#elif defined(RG_C_OUT)
            RG_C_OUT out;
            memset(&out, 0, sizeof out); /* padding bytes compare equal across backends */
            st = RG_C_HANDLER(&msg, &out, state, 0, stop);
            if (st == RG_STATUS_OUTPUT) {
                unsigned char* slot = out_ring + (otail & (out_cap - 1u)) * (rg_u64)RG_C_OUT_SLOT;
                memset(slot, 0, RG_C_OUT_SLOT);
                memcpy(slot, &out, sizeof out);
                otail += 1u;
                produced += 1u;
            }
#else
            st = RG_C_HANDLER(&msg, 0, state, 0, stop);
#endif
#ifdef RG_C_TELEMETRY
            if (timed) {
                rg_c_tele_count(tm->handler, rg_c_now() - started);
                const rg_u64 sent = sent_at[((head + done) & (in_cap - 1u)) / (rg_u64)(RG_C_TELEMETRY)];
                rg_c_tele_count(tm->queue, started > sent ? started - sent : 0u);
            }
#endif
            if (st < 0 && -st < RG_C_REASONS) {
                rg_c_add(&ctl->rejected[-st], (rg_u64)1);
            }
            done += 1u;
            if (st == RG_STATUS_FAULT_STOPPED) {
                /* Interrupted by a stop-now request: it counts as handled, nothing more runs. */
                stopped = 1;
                break;
            }
            if ((done & (RG_C_PUBLISH_EVERY - 1u)) == 0u) {
#ifdef RG_C_OUT
                rg_c_store_rel(&outq->tail, otail);
#endif
                rg_c_store_rel(&inq->head, head + done);
                rg_c_add(&ctl->processed, done);
                rg_c_add(&ctl->emitted, produced);
                head += done;
                done = 0u;
                produced = 0u;
                if (rg_c_stop_now(ctl)) {
                    stopped = 1;
                    break;
                }
            }
        }
        /* Outputs first, then the input head: a reply is visible no later than its input is gone. */
#ifdef RG_C_OUT
        rg_c_store_rel(&outq->tail, otail);
#endif
        rg_c_store_rel(&inq->head, head + done);
        rg_c_add(&ctl->processed, done);
        rg_c_add(&ctl->emitted, produced);
        head += done;
    }
    (void)heartbeat;
    rg_c_store_rel(&ctl->state, RG_C_TERMINATING);
    rg_c_store_rel(&ctl->state, RG_C_TERMINATED);
    return (int)RG_C_TERMINATED;
}
