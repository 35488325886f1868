/* identity: the mail user */
/*
 * What RETR and TOP send of a stored message, one chunk at a time, in place:
 * the wire form (every LF not preceded by CR becomes CRLF; a lone CR stays)
 * and dot-stuffing (RFC 1939, 3: a line that starts with "." gets one more)
 * in one pass.  The bytes are a maildir file's, hence hostile: every offset
 * is checked against the buffer before anything is written, and nothing
 * depends on what the bytes are beyond LF, CR and ".".
 *
 * edit(buf, start, end, state) edits buf[start, end) and returns its new end.
 * Each inserted byte stands before a distinct byte of the chunk (a CR before
 * its LF, a "." before its "."), so the chunk at most doubles; buf must have
 * that room after end, or nothing is written and a RangeError is thrown.
 * state is a Uint32Array: [0] the previous chunk ended with CR, [1] the
 * chunk starts a line (both carried to the next chunk), [2] set to the
 * number of "." inserted (the rest are CRs: the wire form's octets).
 *
 * Two passes: memchr finds each LF and notes where a byte goes in; then the
 * bytes move right from the last insertion back, each at most once.
 */
#include <node_api.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Insertion offsets; one process edits one chunk at a time (Node's thread). */
static size_t *ins;
static size_t inscap;

static napi_value
fail(napi_env env, const char *msg)
{
	napi_throw_range_error(env, NULL, msg);
	return NULL;
}

static napi_value
edit(napi_env env, napi_callback_info info)
{
	size_t argc = 4;
	napi_value argv[4];
	uint8_t *buf;
	size_t len, span, n = 0, dots = 0, src, k;
	uint32_t start, end;
	napi_typedarray_type type;
	size_t stlen, stoff;
	void *stdata;
	napi_value ab, ret;
	uint32_t *st;
	uint8_t *p, *e, *lf;
	int cr;

	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4)
		return fail(env, "edit: four arguments");
	if (napi_get_buffer_info(env, argv[0], (void **)&buf, &len) != napi_ok)
		return fail(env, "edit: not a buffer");
	if (napi_get_value_uint32(env, argv[1], &start) != napi_ok ||
	    napi_get_value_uint32(env, argv[2], &end) != napi_ok)
		return fail(env, "edit: offsets");
	if (napi_get_typedarray_info(env, argv[3], &type, &stlen, &stdata, &ab, &stoff) != napi_ok ||
	    type != napi_uint32_array || stlen < 3)
		return fail(env, "edit: state");
	st = stdata;
	if (start > end || end > len)
		return fail(env, "edit: range");
	span = (size_t)end - start;
	/* At most one insertion per byte of the chunk. */
	if (span > len - end)
		return fail(env, "edit: no room");
	if (span > inscap) {
		size_t *grown = realloc(ins, span * sizeof *ins);
		if (grown == NULL)
			return fail(env, "edit: out of memory");
		ins = grown;
		inscap = span;
	}

	p = buf + start;
	e = buf + end;
	if (p < e && st[1] && *p == '.') {
		ins[n++] = start;
		dots++;
	}
	while (p < e && (lf = memchr(p, '\n', (size_t)(e - p))) != NULL) {
		cr = lf > buf + start ? lf[-1] == '\r' : st[0] != 0;
		if (!cr)
			ins[n++] = (size_t)(lf - buf);
		if (lf + 1 < e && lf[1] == '.') {
			ins[n++] = (size_t)(lf + 1 - buf);
			dots++;
		}
		p = lf + 1;
	}
	if (span > 0) {
		st[0] = buf[end - 1] == '\r';
		st[1] = buf[end - 1] == '\n';
	}
	st[2] = (uint32_t)dots;

	/* n <= span <= len - end: every byte moved lands inside buf. */
	src = end;
	for (k = n; k > 0; k--) {
		size_t at = ins[k - 1];
		uint8_t byte = buf[at] == '\n' ? '\r' : '.';
		memmove(buf + at + k, buf + at, src - at);
		buf[at + k - 1] = byte;
		src = at;
	}
	if (napi_create_uint32(env, (uint32_t)(end + n), &ret) != napi_ok)
		return fail(env, "edit: result");
	return ret;
}

NAPI_MODULE_INIT()
{
	napi_value f;

	if (napi_create_function(env, "edit", NAPI_AUTO_LENGTH, edit, NULL, &f) != napi_ok ||
	    napi_set_named_property(env, exports, "edit", f) != napi_ok)
		return NULL;
	return exports;
}
