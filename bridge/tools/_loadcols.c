/* The load generator's per-packet work in C: RFC 3550 statistics, the receive batch's sorting
 * into them, the digest (decode, level at the burst frequency, burst onsets, the analysis
 * window's audio) and the building of a send batch's packets. Why: in numpy each is a few dozen calls on small arrays per batch
 * (an `np.unique` loop where a call comes twice), which at 2,000 calls made the generator cost
 * about what the bridge it loads does; here each is one loop over the packets, in arrival
 * order, which is also how the per-packet reference (`RtpStats`) reads them.
 *
 * The semantics are those of numpy's path in bridge/tools/loadstreams.py, kept as the
 * reference and fallback (`bridge/tools/loadnative.py` says which runs);
 * `tests/unit/test_loadcols.py` runs random streams through both. The statistics are the same
 * to the bit (the same IEEE operations in the same order; built with -ffp-contract=off). The
 * level's sum runs in another order than numpy's matrix product, so a frame within ~1e-12 dB
 * of the threshold could be judged otherwise: no real frame is.
 *
 * No numpy headers: arrays come through the buffer protocol, checked for item size and length.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define HEADER_BYTES 12

/* an argument: an integer, a float, or an array's data and length in items */
typedef union {
    int64_t n;
    double d;
    struct {
        void *data;
        Py_ssize_t items;
    } a;
} Arg;

/* One letter per argument: n integer, d float; arrays by item type, upper case when written:
 * q int64, f float64, i 32-bit, h 16-bit, b uint8, o bool. */
static Py_ssize_t item_size(char kind)
{
    switch (kind | 0x20) {
    case 'q':
    case 'f':
        return 8;
    case 'i':
        return 4;
    case 'h':
        return 2;
    case 'b':
    case 'o':
        return 1;
    default:
        return 0;
    }
}

static int parse_array(PyObject *obj, char kind, Py_ssize_t i, Arg *out)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (kind < 'a' ? PyBUF_WRITABLE : 0);
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, flags) < 0)
        return -1;
    Py_ssize_t size = item_size(kind);
    int ok = view.itemsize == size;
    out->a.data = view.buf;
    out->a.items = view.len / size;
    PyBuffer_Release(&view);
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "argument %zd: items of %zd bytes expected", i, size);
        return -1;
    }
    return 0;
}

/* `args` as `kinds` says. The arrays' data stays the callers' (they hold them for the call). */
static int parse(const char *name, PyObject *const *args, Py_ssize_t nargs, const char *kinds,
                 Arg *out)
{
    Py_ssize_t want = (Py_ssize_t)strlen(kinds);
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s: %zd arguments expected, got %zd", name, want, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < want; i++) {
        if (kinds[i] == 'n') {
            out[i].n = PyLong_AsLongLong(args[i]);
            if (out[i].n == -1 && PyErr_Occurred())
                return -1;
        } else if (kinds[i] == 'd') {
            out[i].d = PyFloat_AsDouble(args[i]);
            if (out[i].d == -1.0 && PyErr_Occurred())
                return -1;
        } else if (parse_array(args[i], kinds[i], i, &out[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

static int too_short(const char *name, const Arg *array, int64_t items)
{
    if (array->a.items >= items)
        return 0;
    PyErr_Format(PyExc_ValueError, "%s: an array of %zd items where %lld are needed", name,
                 array->a.items, (long long)items);
    return 1;
}

/* rows[0..count) all below `capacity`, and none negative unless `negative_ok` */
static int rows_fit(const char *name, const int64_t *rows, int64_t count, int64_t capacity,
                    int negative_ok)
{
    for (int64_t i = 0; i < count; i++) {
        if (rows[i] >= capacity || (rows[i] < 0 && !negative_ok)) {
            PyErr_Format(PyExc_IndexError, "%s: row %lld of %lld", name, (long long)rows[i],
                         (long long)capacity);
            return 0;
        }
    }
    return 1;
}

/* ReceiveStats' columns: `ints` and `floats` are (7, capacity) and (4, capacity) blocks */
typedef struct {
    int64_t *received, *late, *reordered, *base_seq, *max_seq, *cycles, *first_ts;
    double *jitter, *max_jitter, *last_transit, *min_transit;
    double ts_seconds, late_seconds;
    int64_t capacity;
} Stats;

enum { INTS = 7, FLOATS = 4 };

static int stats_columns(const char *name, const Arg *ints, const Arg *floats, double ts_seconds,
                         double late_seconds, Stats *s)
{
    int64_t capacity = ints->a.items / INTS;
    if (ints->a.items != capacity * INTS || floats->a.items != capacity * FLOATS) {
        PyErr_Format(PyExc_ValueError, "%s: stats blocks of %d and %d rows expected", name, INTS,
                     FLOATS);
        return -1;
    }
    int64_t *i = ints->a.data;
    double *f = floats->a.data;
    *s = (Stats){i, i + capacity, i + 2 * capacity, i + 3 * capacity, i + 4 * capacity,
                 i + 5 * capacity, i + 6 * capacity, f, f + capacity, f + 2 * capacity,
                 f + 3 * capacity, ts_seconds, late_seconds, capacity};
    return 0;
}

/* RtpStats.receive (bridge/tools/loadrtp.py) for call `r` */
static void account(const Stats *s, int64_t r, int64_t seq, int64_t ts, double now)
{
    if (s->received[r] == 0) {
        s->base_seq[r] = s->max_seq[r] = seq;
        s->first_ts[r] = ts;
    } else {
        int64_t delta = (seq - s->max_seq[r]) & 0xFFFF;
        if (0 < delta && delta < 0x8000) {
            if (seq < s->max_seq[r])
                s->cycles[r] += 0x10000;
            s->max_seq[r] = seq;
        } else {
            s->reordered[r] += 1;
        }
    }
    s->received[r] += 1;
    double transit = now - (double)((ts - s->first_ts[r]) & 0xFFFFFFFF) * s->ts_seconds;
    if (s->received[r] > 1) {
        s->jitter[r] += (fabs(transit - s->last_transit[r]) - s->jitter[r]) / 16.0;
        if (s->jitter[r] > s->max_jitter[r])
            s->max_jitter[r] = s->jitter[r];
    }
    s->last_transit[r] = transit;
    if (transit < s->min_transit[r])
        s->min_transit[r] = transit;
    else if (transit - s->min_transit[r] > s->late_seconds)
        s->late[r] += 1;
}

/* stats(count, rows, seq, ts, now, ints, floats, ts_seconds, late_seconds): ReceiveStats.receive,
 * packets in arrival order (int64 rows, sequence numbers and timestamps; float64 arrivals) */
static PyObject *stats(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Arg a[9];
    Stats s;
    if (parse("stats", args, nargs, "nqqqfQFdd", a) < 0 ||
        stats_columns("stats", &a[5], &a[6], a[7].d, a[8].d, &s) < 0)
        return NULL;
    int64_t count = a[0].n;
    for (int k = 1; k <= 4; k++)
        if (too_short("stats", &a[k], count))
            return NULL;
    const int64_t *rows = a[1].a.data, *seq = a[2].a.data, *ts = a[3].a.data;
    const double *now = a[4].a.data;
    if (!rows_fit("stats", rows, count, s.capacity, 0))
        return NULL;
    for (int64_t i = 0; i < count; i++)
        account(&s, rows[i], seq[i], ts[i], now[i]);
    Py_RETURN_NONE;
}

static inline uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* receive(count, rows, lengths, data, stride, now, odd, ints, floats, ts_seconds, late_seconds,
 *         packet_bytes, stash_rows, stash_at, stash_codes, stashed) -> (unknown, stashed):
 * a recvmmsg batch (datagram i at data + i * stride, `lengths[i]` bytes, call `rows[i]`, -1
 * for none of ours) as Streams.receive takes it: a datagram of no call is counted unknown, one
 * of a call but not a plain RTP packet of `packet_bytes` counted in `odd`, and the others
 * accounted (`stats`) and their payloads put in the stash after the `stashed` already there,
 * with their call and arrival, for the digest. */
static PyObject *receive(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Arg a[16];
    Stats s;
    if (parse("receive", args, nargs, "nqqbnfQQFddnQFBn", a) < 0 ||
        stats_columns("receive", &a[7], &a[8], a[9].d, a[10].d, &s) < 0)
        return NULL;
    int64_t count = a[0].n, stride = a[4].n, packet_bytes = a[11].n, stashed = a[15].n;
    int64_t frame = packet_bytes - HEADER_BYTES;
    if (too_short("receive", &a[1], count) || too_short("receive", &a[2], count) ||
        too_short("receive", &a[5], count) || too_short("receive", &a[6], s.capacity) ||
        too_short("receive", &a[12], stashed + count) ||
        too_short("receive", &a[13], stashed + count) ||
        too_short("receive", &a[14], (stashed + count) * frame))
        return NULL;
    if (frame < 0 || stride < packet_bytes || (count && a[3].a.items < (count - 1) * stride +
                                                                          packet_bytes)) {
        PyErr_SetString(PyExc_ValueError, "receive: datagrams outside the buffer");
        return NULL;
    }
    const int64_t *rows = a[1].a.data, *lengths = a[2].a.data;
    const uint8_t *data = a[3].a.data;
    const double *now = a[5].a.data;
    int64_t *odd = a[6].a.data, *stash_rows = a[12].a.data;
    double *stash_at = a[13].a.data;
    uint8_t *stash_codes = a[14].a.data;
    if (!rows_fit("receive", rows, count, s.capacity, 1))
        return NULL;
    int64_t unknown = 0;
    for (int64_t i = 0; i < count; i++) {
        int64_t r = rows[i];
        const uint8_t *packet = data + i * stride;
        if (r < 0) {
            unknown += 1;
            continue;
        }
        if (lengths[i] != packet_bytes || packet[0] != 0x80) {
            odd[r] += 1;
            continue;
        }
        int64_t seq = ((int64_t)packet[2] << 8) | packet[3];
        account(&s, r, seq, be32(packet + 4), now[i]);
        stash_rows[stashed] = r;
        stash_at[stashed] = now[i];
        memcpy(stash_codes + stashed * frame, packet + HEADER_BYTES, (size_t)frame);
        stashed += 1;
    }
    return Py_BuildValue("LL", (long long)unknown, (long long)stashed);
}

/* The frame's samples through `table` into `out`; the square of its magnitude at the basis'
 * frequency (four partial sums a part, in registers: not one long chain of dependent sums) */
static double frame_power(const uint8_t *codes, const int16_t *table, const double *cosine,
                          const double *sine, int64_t frame, int16_t *out)
{
    double re0 = 0.0, re1 = 0.0, re2 = 0.0, re3 = 0.0, im0 = 0.0, im1 = 0.0, im2 = 0.0, im3 = 0.0;
    for (int64_t k = 0; k < frame; k++)
        out[k] = table[codes[k]];
    for (int64_t k = 0; k < frame; k += 4) {
        double s0 = out[k], s1 = out[k + 1], s2 = out[k + 2], s3 = out[k + 3];
        re0 += s0 * cosine[k];
        re1 += s1 * cosine[k + 1];
        re2 += s2 * cosine[k + 2];
        re3 += s3 * cosine[k + 3];
        im0 += s0 * sine[k];
        im1 += s1 * sine[k + 1];
        im2 += s2 * sine[k + 2];
        im3 += s3 * sine[k + 3];
    }
    double real = (re0 + re1) + (re2 + re3), imaginary = (im0 + im1) + (im2 + im3);
    return real * real + imaginary * imaginary;
}

/* digest(count, rows, arrivals, codes, table, basis, threshold, burst_on, start, end,
 *        onset_rows, onset_at, kept_rows, kept_samples) -> (onsets, kept):
 * Streams.digest of `count` payloads (`codes`, a frame each) in arrival order: each decoded
 * through `table` (256 int16), a burst frame when the square of its Hann-windowed DFT at the
 * burst frequency (`basis`: the frame's cosine then sine, window applied) passes `threshold`;
 * a burst frame after one that was not (per call, `burst_on` carrying the last across digests)
 * is an onset (its call and arrival written out); the decoded frames arriving within
 * [start, end) are kept (their call and samples written out). */
static PyObject *digest(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Arg a[14];
    if (parse("digest", args, nargs, "nqfbhfdOddQFQH", a) < 0)
        return NULL;
    int64_t count = a[0].n, frame = a[5].a.items / 2;
    if (frame % 4 || too_short("digest", &a[4], 256) || too_short("digest", &a[1], count) ||
        too_short("digest", &a[2], count) || too_short("digest", &a[3], count * frame) ||
        too_short("digest", &a[10], count) || too_short("digest", &a[11], count) ||
        too_short("digest", &a[12], count) || too_short("digest", &a[13], count * frame)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "digest: frames of a multiple of 4 samples");
        return NULL;
    }
    const int64_t *rows = a[1].a.data;
    const double *arrivals = a[2].a.data, *cosine = a[5].a.data, *sine = cosine + frame;
    const uint8_t *codes = a[3].a.data;
    const int16_t *table = a[4].a.data;
    double threshold = a[6].d, start = a[8].d, end = a[9].d;
    uint8_t *burst_on = a[7].a.data;
    int64_t *onset_rows = a[10].a.data, *kept_rows = a[12].a.data;
    double *onset_at = a[11].a.data;
    int16_t *kept_samples = a[13].a.data;
    if (!rows_fit("digest", rows, count, a[7].a.items, 0))
        return NULL;
    int16_t scratch[4096];
    if (frame > 4096) {
        PyErr_SetString(PyExc_ValueError, "digest: frames of at most 4096 samples");
        return NULL;
    }
    int64_t onsets = 0, kept = 0;
    for (int64_t i = 0; i < count; i++) {
        int64_t r = rows[i];
        double at = arrivals[i];
        int inside = at >= start && at < end;
        int16_t *samples = inside ? kept_samples + kept * frame : scratch;
        int on = frame_power(codes + i * frame, table, cosine, sine, frame, samples) > threshold;
        if (on && !burst_on[r]) {
            onset_rows[onsets] = r;
            onset_at[onsets] = at;
            onsets += 1;
        }
        burst_on[r] = (uint8_t)on;
        if (inside)
            kept_rows[kept++] = r;
    }
    return Py_BuildValue("LL", (long long)onsets, (long long)kept);
}

static inline void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
    put_be16(p, (uint16_t)(v >> 16));
    put_be16(p + 2, (uint16_t)v);
}

/* build(count, rows, tx, stride, packet_bytes, payload_type, seq, ts, ssrc, frame_start,
 *       frame_count, position, bank): Streams._send's packets, packet i at tx + i * stride: an
 * RTP header (version 2, no marker) of call rows[i]'s sequence number, timestamp and SSRC
 * (uint16, uint32, uint32 columns), then the call's next frame of `bank` (frame_start +
 * position % frame_count). */
static PyObject *build(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Arg a[13];
    if (parse("build", args, nargs, "nqBnnnhiiqqqb", a) < 0)
        return NULL;
    int64_t count = a[0].n, stride = a[3].n, packet_bytes = a[4].n, capacity = a[6].a.items;
    int64_t frame = packet_bytes - HEADER_BYTES;
    if (too_short("build", &a[1], count) || too_short("build", &a[7], capacity) ||
        too_short("build", &a[8], capacity) || too_short("build", &a[9], capacity) ||
        too_short("build", &a[10], capacity) || too_short("build", &a[11], capacity))
        return NULL;
    if (frame <= 0 || stride < packet_bytes || a[2].a.items < count * stride) {
        PyErr_SetString(PyExc_ValueError, "build: packets outside the buffer");
        return NULL;
    }
    const int64_t *rows = a[1].a.data, *frame_start = a[9].a.data, *frame_count = a[10].a.data;
    const int64_t *position = a[11].a.data;
    const uint16_t *seq = a[6].a.data;
    const uint32_t *ts = a[7].a.data, *ssrc = a[8].a.data;
    const uint8_t *bank = a[12].a.data;
    uint8_t *tx = a[2].a.data;
    int64_t frames = a[12].a.items / frame;
    if (!rows_fit("build", rows, count, capacity, 0))
        return NULL;
    for (int64_t i = 0; i < count; i++) {
        int64_t r = rows[i];
        int64_t at = frame_count[r] > 0 ? frame_start[r] + position[r] % frame_count[r] : -1;
        if (at < 0 || at >= frames) {
            PyErr_Format(PyExc_IndexError, "build: frame %lld of %lld", (long long)at,
                         (long long)frames);
            return NULL;
        }
        uint8_t *packet = tx + i * stride;
        packet[0] = 0x80;
        packet[1] = (uint8_t)a[5].n;
        put_be16(packet + 2, seq[r]);
        put_be32(packet + 4, ts[r]);
        put_be32(packet + 8, ssrc[r]);
        memcpy(packet + HEADER_BYTES, bank + at * frame, (size_t)frame);
    }
    Py_RETURN_NONE;
}

/* advance(count, rows, seq, ts, position, sent, next_time, frame_samples, frame_seconds): each
 * of `rows` (distinct) a frame on, once its packet went: the next sequence number (modulo
 * 2^16), timestamp (modulo 2^32), frame of its loop, packet count and send time. */
static PyObject *advance(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Arg a[9];
    if (parse("advance", args, nargs, "nqHIQQFnd", a) < 0)
        return NULL;
    int64_t count = a[0].n, capacity = a[2].a.items;
    if (too_short("advance", &a[1], count) || too_short("advance", &a[3], capacity) ||
        too_short("advance", &a[4], capacity) || too_short("advance", &a[5], capacity) ||
        too_short("advance", &a[6], capacity))
        return NULL;
    const int64_t *rows = a[1].a.data;
    uint16_t *seq = a[2].a.data;
    uint32_t *ts = a[3].a.data;
    int64_t *position = a[4].a.data, *sent = a[5].a.data;
    double *next_time = a[6].a.data;
    if (!rows_fit("advance", rows, count, capacity, 0))
        return NULL;
    for (int64_t i = 0; i < count; i++) {
        int64_t r = rows[i];
        seq[r] = (uint16_t)(seq[r] + 1);
        ts[r] = (uint32_t)(ts[r] + (uint32_t)a[7].n);
        position[r] += 1;
        sent[r] += 1;
        next_time[r] += a[8].d;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"stats", (PyCFunction)(void (*)(void))stats, METH_FASTCALL, "RFC 3550 statistics"},
    {"receive", (PyCFunction)(void (*)(void))receive, METH_FASTCALL, "account a receive batch"},
    {"digest", (PyCFunction)(void (*)(void))digest, METH_FASTCALL, "onsets and kept audio"},
    {"build", (PyCFunction)(void (*)(void))build, METH_FASTCALL, "a send batch's packets"},
    {"advance", (PyCFunction)(void (*)(void))advance, METH_FASTCALL, "calls a frame on"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_loadcols", "The load generator's per-packet work.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__loadcols(void) { return PyModule_Create(&module); }
