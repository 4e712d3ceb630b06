/* The shared RTP port's per-packet path in C: demultiplex by source, push into the members'
 * jitter columns, pop a tick's frames. Why: in numpy each of these is a few dozen calls on
 * small arrays per tick, ~1-3 us each on the cold caches of a worker that sleeps most of its
 * 20 ms; here each is one loop over the packets.
 *
 * The policy is `JitterColumns`' array path (bridge/rtp/jitter_columns.py), exactly: the
 * usual packet (playing, same SSRC, within MAX_SEQUENCE_JUMP, no wider than a row) is pushed
 * here, any other is marked for the Python port of `JitterBuffer` (`push_one`), and so are all
 * of that member's later packets in the batch, so each member's packets still go in in order.
 * `tests/unit/test_jitter_columns.py` runs random streams through both and a `JitterBuffer`.
 *
 * No numpy headers: arrays come through the buffer protocol, and the columns as one array of
 * 64-bit words, the addresses of their data in the order of `COLUMNS` in
 * bridge/rtp/native.py, then constants (`Columns`, below).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#define NONE (-1)

typedef struct {
    int64_t *target, *max_frames, *clock_rate;
    int64_t *ssrc, *next, *last_played, *empty_pops;
    uint8_t *waiting;
    int64_t *queued, *probation_seq;
    double *jitter, *last_arrival;
    int64_t *last_ts;
    double *jitter_ms;
    int64_t *received, *played, *late, *duplicate, *overflow;
    int64_t *ring_seq, *ring_len;
    uint8_t *ring;
    int64_t *loss_ssrc, *loss_first, *loss_highest, *loss_received, *loss_earlier;
    int64_t *packets_in;
    double *last_rtp;
    uint8_t *fresh;
    int64_t *last_len;
    uint8_t *last_good;
    int64_t *deferred;
    /* constants */
    int64_t width, ring_size, max_jump, max_dropout, max_misorder;
} Columns;

/* what `deliver` says of each datagram */
enum { PUSHED = 0, ONE_BY_ONE = 1, OTHER = 2, UNMATCHED = 3 };

/* Each argument as a 64-bit word: an int as itself, an array (any C-contiguous buffer) as
 * the address of its data. The caller holds the arrays for the call's length. */
static int read_words(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, int64_t *out)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "expected %zd arguments, got %zd", want, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < want; i++) {
        if (PyLong_Check(args[i])) {
            out[i] = PyLong_AsLongLong(args[i]);
            if (out[i] == -1 && PyErr_Occurred())
                return -1;
            continue;
        }
        Py_buffer view;
        if (PyObject_GetBuffer(args[i], &view, PyBUF_SIMPLE) < 0)
            return -1;
        out[i] = (int64_t)(uintptr_t)view.buf;
        PyBuffer_Release(&view);
    }
    return 0;
}

static inline uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* StreamLoss.observe */
static void observe(const Columns *c, int64_t m, int64_t ssrc, int64_t seq)
{
    int64_t delta = (seq - c->loss_highest[m]) & 0xFFFF;
    int ahead = delta < 0x8000;
    int restart = ssrc != c->loss_ssrc[m] || (ahead && delta > c->max_dropout) ||
                  (!ahead && 0x10000 - delta > c->max_misorder);
    if (!restart) {
        if (ahead)
            c->loss_highest[m] += delta;
        c->loss_received[m] += 1;
        return;
    }
    if (c->loss_ssrc[m] != NONE) {
        int64_t now = c->loss_highest[m] - c->loss_first[m] + 1 - c->loss_received[m];
        c->loss_earlier[m] += now > 0 ? now : 0;
    }
    c->loss_ssrc[m] = ssrc;
    c->loss_first[m] = c->loss_highest[m] = seq;
    c->loss_received[m] = 1;
}

/* JitterBuffer._overflow for a playing member: drop the oldest queued (all queued lie within
 * 2 * MAX_SEQUENCE_JUMP after the next to play), the first of equals as numpy's argmin */
static void overflow(const Columns *c, int64_t m)
{
    int64_t *seqs = c->ring_seq + m * c->ring_size;
    while (c->queued[m] > c->max_frames[m]) {
        int64_t best = 0, best_ahead = 0x10001;
        for (int64_t r = 0; r < c->ring_size; r++) {
            int64_t ahead = seqs[r] == NONE ? 0x10000 : (seqs[r] - c->next[m]) & 0xFFFF;
            if (ahead < best_ahead) {
                best_ahead = ahead;
                best = r;
            }
        }
        int64_t oldest = seqs[best];
        seqs[best] = NONE;
        c->queued[m] -= 1;
        c->next[m] = (oldest + 1) & 0xFFFF;
        c->waiting[m] = 0;
        c->overflow[m] += 1;
    }
}

/* One datagram (header at `row`, `length` bytes in all) of member `m`, arrived at `at`. */
static int push(const Columns *c, int64_t token, int64_t m, const uint8_t *row, int64_t length,
                double at)
{
    int64_t seq = ((int64_t)row[2] << 8) | row[3];
    int64_t ts = be32(row + 4);
    int64_t ssrc = be32(row + 8);
    int64_t size = length - 12;
    c->packets_in[m] += 1;
    c->last_rtp[m] = at;
    observe(c, m, ssrc, seq);
    int64_t following = c->next[m];
    if (c->deferred[m] == token || following == NONE || ssrc != c->ssrc[m] ||
        ((seq - following + c->max_jump) & 0xFFFF) > 2 * c->max_jump || size > c->width) {
        c->deferred[m] = token;
        return ONE_BY_ONE;
    }
    c->received[m] += 1;
    c->probation_seq[m] = NONE;
    double last_arrival = c->last_arrival[m];
    if (!isnan(last_arrival)) {
        int64_t elapsed = (ts - c->last_ts[m]) & 0xFFFFFFFF;
        if (elapsed >= 0x80000000LL)
            elapsed -= 0x100000000LL;
        double rate = (double)c->clock_rate[m];
        double jitter = c->jitter[m];
        jitter = jitter + (fabs((at - last_arrival) * rate - (double)elapsed) - jitter) / 16.0;
        c->jitter[m] = jitter;
        c->jitter_ms[m] = jitter * 1000.0 / rate;
    }
    c->last_arrival[m] = at;
    c->last_ts[m] = ts;
    if (((seq - following) & 0xFFFF) >= 0x8000) {
        c->late[m] += 1;
        return PUSHED;
    }
    int64_t at_ring = m * c->ring_size + (seq & (c->ring_size - 1));
    if (c->ring_seq[at_ring] == seq) {
        c->duplicate[m] += 1;
        return PUSHED;
    }
    c->ring_seq[at_ring] = seq;
    c->ring_len[at_ring] = size;
    memcpy(c->ring + at_ring * c->width, row + 12, (size_t)c->width);
    c->queued[m] += 1;
    if (c->queued[m] > c->max_frames[m])
        overflow(c, m);
    return PUSHED;
}

/* deliver(columns, token, count, rows, stride, lengths, index, fast_type, column, arrivals,
 *         kinds): each datagram `i` of a receive batch (row i of `rows`, `lengths[i]` bytes,
 * routed to demux slot `index[i]`, -1 if nobody's) pushed when it takes the array path (a
 * plain RTP header in its member's payload type `fast_type[index]`, member row
 * `column[index]`); `kinds[i]` says what became of it. Returns how many were not pushed. */
static PyObject *deliver(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t a[11];
    if (read_words(args, nargs, 11, a) < 0)
        return NULL;
    const Columns *c = (const Columns *)(uintptr_t)a[0];
    int64_t token = a[1], count = a[2], stride = a[4];
    const uint8_t *rows = (const uint8_t *)(uintptr_t)a[3];
    const int64_t *lengths = (const int64_t *)(uintptr_t)a[5];
    const int64_t *index = (const int64_t *)(uintptr_t)a[6];
    const int16_t *fast_type = (const int16_t *)(uintptr_t)a[7];
    const int64_t *column = (const int64_t *)(uintptr_t)a[8];
    const double *arrivals = (const double *)(uintptr_t)a[9];
    int8_t *kinds = (int8_t *)(uintptr_t)a[10];
    int64_t left = 0;
    for (int64_t i = 0; i < count; i++) {
        const uint8_t *row = rows + i * stride;
        int64_t k = index[i];
        int kind;
        if (k < 0)
            kind = UNMATCHED;
        else if (lengths[i] < 12 || row[0] != 0x80 || row[1] != fast_type[k])
            kind = OTHER;
        else
            kind = push(c, token, column[k], row, lengths[i], arrivals[i]);
        kinds[i] = (int8_t)kind;
        left += kind != PUSHED;
    }
    return PyLong_FromLongLong(left);
}

/* pop_hits(columns, count, slots, rows): each member's frame to play when it is the next in
 * its ring (JitterBuffer.pop's usual case, its state moved on): its ring row; -1 when not
 * playing; -2 when playing and the frame is not there (the Python `pop_one` decides).
 * Returns how many -2. */
static PyObject *pop_hits(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t a[4];
    if (read_words(args, nargs, 4, a) < 0)
        return NULL;
    const Columns *c = (const Columns *)(uintptr_t)a[0];
    int64_t count = a[1];
    const int64_t *slots = (const int64_t *)(uintptr_t)a[2];
    int64_t *rows = (int64_t *)(uintptr_t)a[3];
    int64_t missing = 0;
    for (int64_t i = 0; i < count; i++) {
        int64_t m = slots[i], following = c->next[m];
        if (following == NONE) {
            rows[i] = NONE;
            continue;
        }
        int64_t r = following & (c->ring_size - 1);
        int64_t *at = c->ring_seq + m * c->ring_size + r;
        if (*at != following) {
            rows[i] = -2;
            missing++;
            continue;
        }
        *at = NONE;
        c->queued[m] -= 1;
        c->next[m] = (following + 1) & 0xFFFF;
        c->waiting[m] = 0;
        c->empty_pops[m] = 0;
        c->last_played[m] = following;
        c->played[m] += 1;
        rows[i] = r;
    }
    return PyLong_FromLongLong(missing);
}

/* take_rows(columns, count, slots, rows, lengths, payloads, frames, frame_rows, tables,
 *           table_of, samples): for each member with a ring row to play, its payload into
 * row i of `payloads` (width bytes) and the concealer's copy (`last_good`, `last_len`,
 * `fresh`); `lengths[i]` its length, or -1 when it has none. A payload of exactly `samples`
 * bytes (a whole G.711 frame) is also decoded into row `frame_rows[i]` of `frames` (int16,
 * `samples` wide) through the 256-entry table `tables[table_of[i]]`. */
static PyObject *take_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t a[11];
    if (read_words(args, nargs, 11, a) < 0)
        return NULL;
    const Columns *c = (const Columns *)(uintptr_t)a[0];
    int64_t count = a[1], width = c->width, samples = a[10];
    const int64_t *slots = (const int64_t *)(uintptr_t)a[2];
    const int64_t *rows = (const int64_t *)(uintptr_t)a[3];
    int64_t *lengths = (int64_t *)(uintptr_t)a[4];
    uint8_t *payloads = (uint8_t *)(uintptr_t)a[5];
    int16_t *frames = (int16_t *)(uintptr_t)a[6];
    const int64_t *frame_rows = (const int64_t *)(uintptr_t)a[7];
    const int16_t *tables = (const int16_t *)(uintptr_t)a[8];
    const int64_t *table_of = (const int64_t *)(uintptr_t)a[9];
    if (samples > width) {
        PyErr_SetString(PyExc_ValueError, "take_rows: a frame wider than a ring row");
        return NULL;
    }
    for (int64_t i = 0; i < count; i++) {
        int64_t m = slots[i], r = rows[i];
        if (r < 0) {
            lengths[i] = NONE;
            continue;
        }
        int64_t at = m * c->ring_size + r;
        const uint8_t *payload = c->ring + at * width;
        memcpy(payloads + i * width, payload, (size_t)width);
        memcpy(c->last_good + m * width, payload, (size_t)width);
        lengths[i] = c->last_len[m] = c->ring_len[at];
        c->fresh[m] = 1;
        if (lengths[i] == samples) {
            const int16_t *table = tables + 256 * table_of[i];
            int16_t *frame = frames + frame_rows[i] * samples;
            for (int64_t k = 0; k < samples; k++)
                frame[k] = table[payload[k]];
        }
    }
    Py_RETURN_NONE;
}

/* match(known, size, unlatched, count, names, keys, index): each source address (struct
 * sockaddr_in rows of 16 bytes: port and address in network order) as `ip << 16 | port` into
 * `keys`, and its position in the sorted `known` keys into `index` (-1 if absent). Returns
 * (how many absent, how many from a known address whose call is not latched yet). */
static PyObject *match(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t a[7];
    if (read_words(args, nargs, 7, a) < 0)
        return NULL;
    const int64_t *known = (const int64_t *)(uintptr_t)a[0];
    int64_t size = a[1], count = a[3], absent = 0, unlatched = 0;
    const uint8_t *waiting = (const uint8_t *)(uintptr_t)a[2];
    const uint8_t *names = (const uint8_t *)(uintptr_t)a[4];
    int64_t *keys = (int64_t *)(uintptr_t)a[5];
    int64_t *index = (int64_t *)(uintptr_t)a[6];
    for (int64_t i = 0; i < count; i++) {
        const uint8_t *name = names + 16 * i;
        int64_t key = ((int64_t)be32(name + 4) << 16) | ((int64_t)name[2] << 8) | name[3];
        int64_t low = 0, high = size;
        while (low < high) {
            int64_t mid = (low + high) / 2;
            if (known[mid] < key)
                low = mid + 1;
            else
                high = mid;
        }
        keys[i] = key;
        if (low < size && known[low] == key) {
            index[i] = low;
            unlatched += waiting[low] != 0;
        } else {
            index[i] = NONE;
            absent++;
        }
    }
    return Py_BuildValue("(LL)", (long long)absent, (long long)unlatched);
}

/* stamps(count, headers, controls, to_clock, fallback, lengths, arrivals): of the datagrams
 * of a recvmmsg batch (struct mmsghdr rows of 64 bytes, each with a 64-byte control area), the
 * length of each and its kernel arrival time (SCM_TIMESTAMPNS) plus `to_clock`, or `fallback`
 * where there is none; as bridge/net/mmsg.py's numpy `lengths` and `arrivals` compute them. */
static PyObject *stamps(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7 || !PyFloat_Check(args[3]) || !PyFloat_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "stamps(count, headers, controls, float, float, ...)");
        return NULL;
    }
    double to_clock = PyFloat_AS_DOUBLE(args[3]), fallback = PyFloat_AS_DOUBLE(args[4]);
    PyObject *rest[5] = {args[0], args[1], args[2], args[5], args[6]};
    int64_t a[5];
    if (read_words(rest, 5, 5, a) < 0)
        return NULL;
    int64_t count = a[0];
    const uint8_t *headers = (const uint8_t *)(uintptr_t)a[1];
    const uint8_t *controls = (const uint8_t *)(uintptr_t)a[2];
    int64_t *lengths = (int64_t *)(uintptr_t)a[3];
    double *arrivals = (double *)(uintptr_t)a[4];
    for (int64_t i = 0; i < count; i++) {
        const uint8_t *header = headers + 64 * i, *control = controls + 64 * i;
        uint64_t control_length;
        uint32_t length;
        int32_t level, type;
        int64_t sec, nsec;
        memcpy(&control_length, header + 40, 8);
        memcpy(&length, header + 56, 4);
        memcpy(&level, control + 8, 4);
        memcpy(&type, control + 12, 4);
        memcpy(&sec, control + 16, 8);
        memcpy(&nsec, control + 24, 8);
        lengths[i] = length;
        if (control_length >= 32 && level == SOL_SOCKET && type == SO_TIMESTAMPNS)
            arrivals[i] = ((double)sec + (double)nsec * 1e-9) + to_clock;
        else
            arrivals[i] = fallback;
    }
    Py_RETURN_NONE;
}

static inline int16_t saturated(int32_t value)
{
    return (int16_t)(value > 32767 ? 32767 : value < -32768 ? -32768 : value);
}

/* mix(frames, samples, contributors, contributor_room, count, room_count, totals, mixed,
 *     tables, codecs, encoded): the vector tick's mix-minus (bridge/mixing/vector/tick.py,
 * `_mix` and `_encode`): each room's sum of its contributors' frames (int32 `totals`,
 * room_count rows, scratch), then into `mixed` (int16) each contributor's own row (its room's
 * total less its frame), then each room's total, saturated; and `mixed` encoded through each
 * of the `codecs` 65,536-entry tables (`tables`, uint8, indexed by the sample as uint16) into
 * `encoded` (codecs x rows x samples). Integer sums: the same, bit for bit, in any order. */
static PyObject *mix(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t a[11];
    if (read_words(args, nargs, 11, a) < 0)
        return NULL;
    const int16_t *frames = (const int16_t *)(uintptr_t)a[0];
    int64_t samples = a[1], count = a[4], room_count = a[5], codecs = a[9];
    const int64_t *contributors = (const int64_t *)(uintptr_t)a[2];
    const int64_t *contributor_room = (const int64_t *)(uintptr_t)a[3];
    int32_t *totals = (int32_t *)(uintptr_t)a[6];
    int16_t *mixed = (int16_t *)(uintptr_t)a[7];
    const uint8_t *tables = (const uint8_t *)(uintptr_t)a[8];
    uint8_t *encoded = (uint8_t *)(uintptr_t)a[10];
    int64_t rows = count + room_count;
    memset(totals, 0, (size_t)(room_count * samples) * sizeof(int32_t));
    for (int64_t i = 0; i < count; i++) {
        int32_t *total = totals + contributor_room[i] * samples;
        const int16_t *frame = frames + contributors[i] * samples;
        for (int64_t k = 0; k < samples; k++)
            total[k] += frame[k];
    }
    for (int64_t i = 0; i < count; i++) {
        const int32_t *total = totals + contributor_room[i] * samples;
        const int16_t *frame = frames + contributors[i] * samples;
        int16_t *out = mixed + i * samples;
        for (int64_t k = 0; k < samples; k++)
            out[k] = saturated(total[k] - frame[k]);
    }
    for (int64_t r = 0; r < room_count; r++) {
        const int32_t *total = totals + r * samples;
        int16_t *out = mixed + (count + r) * samples;
        for (int64_t k = 0; k < samples; k++)
            out[k] = saturated(total[k]);
    }
    for (int64_t c = 0; c < codecs; c++) {
        const uint8_t *table = tables + c * 65536;
        uint8_t *out = encoded + c * rows * samples;
        for (int64_t k = 0; k < rows * samples; k++)
            out[k] = table[(uint16_t)mixed[k]];
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"mix", (PyCFunction)(void (*)(void))mix, METH_FASTCALL, "mix-minus and encode"},
    {"stamps", (PyCFunction)(void (*)(void))stamps, METH_FASTCALL, "lengths and arrivals"},
    {"deliver", (PyCFunction)(void (*)(void))deliver, METH_FASTCALL, "push a receive batch"},
    {"pop_hits", (PyCFunction)(void (*)(void))pop_hits, METH_FASTCALL, "pop the usual frames"},
    {"take_rows", (PyCFunction)(void (*)(void))take_rows, METH_FASTCALL, "copy popped frames"},
    {"match", (PyCFunction)(void (*)(void))match, METH_FASTCALL, "route sources"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rtpcols", "The shared RTP port's per-packet path.", -1, methods,
};

PyMODINIT_FUNC PyInit__rtpcols(void) { return PyModule_Create(&module); }
