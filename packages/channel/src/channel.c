/*
 * Message channels between popd and its children, in the manner of OpenSMTPD's
 * imsg: AF_UNIX SOCK_SEQPACKET sockets, so the kernel keeps message boundaries
 * and a message can never be longer than the buffer it is read into, with at
 * most one descriptor per message passed as SCM_RIGHTS.  Everything a peer
 * sends is read here, in bounded buffers, before JavaScript sees it: a hostile
 * peer can produce 'error' events, never an exception in the reader.
 *
 * One uv_poll per channel on Node's loop: readable while open, writable only
 * while messages wait in the send queue.
 */
#include <node_api.h>
#include <uv.h>

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_MESSAGE (64 * 1024)
/* Messages waiting for the peer; 4096 * 64 KiB bounds a stuck peer's cost. */
#define MAX_QUEUE 4096
/* Messages read per wakeup, so that one busy channel cannot starve the loop. */
#define READS_PER_WAKEUP 64
/*
 * Descriptors the control buffer has room for.  A legitimate message has at
 * most one; room for more lets extra ones arrive (and be closed) as a
 * countable SCM_RIGHTS rather than as MSG_CTRUNC, which the kernel reports
 * for anything beyond room after closing what it could not deliver.
 */
#define MAX_FDS 8
/* Socket buffers of a seqpacket pair are raised to this if smaller (OpenBSD's default is 32 KiB, less than MAX_MESSAGE). */
#define SOCKBUF (4 * MAX_MESSAGE)

#ifdef MSG_NOSIGNAL
#define SEND_FLAGS MSG_NOSIGNAL
#else
#define SEND_FLAGS 0
#endif
#ifdef MSG_CMSG_CLOEXEC
#define RECV_FLAGS MSG_CMSG_CLOEXEC
#else
#define RECV_FLAGS 0
#endif

enum { EV_MESSAGE = 0, EV_ERROR = 1, EV_CLOSE = 2 };

struct msg {
	struct msg *next;
	int fd; /* our own dup, or -1 */
	size_t len;
	unsigned char data[];
};

struct chan {
	uv_poll_t poll; /* first: the poll handle's address is the struct's */
	napi_env env;
	napi_ref self; /* strong while open: the object must outlive its callbacks */
	napi_ref cb;   /* (kind, data, fd) => void, released on close */
	napi_async_context actx;
	int fd;
	int open;
	int broken; /* a send saw EPIPE: the read side reports the close */
	int events;
	int wrapped;       /* the JavaScript object has not been finalized */
	int handle_closed; /* uv_close has called back */
	struct msg *head, *tail;
	unsigned queued;
	unsigned char *rbuf; /* MAX_MESSAGE + 1, so that a longer message shows */
};

static napi_value throw_errno(napi_env env, const char *what, int err)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s: %s", what, strerror(err));
	napi_throw_error(env, uv_err_name(-err), buf);
	return NULL;
}

#if !defined(SOCK_CLOEXEC) || !defined(MSG_CMSG_CLOEXEC)
static int set_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFD);
	return fl < 0 ? -1 : fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
}
#endif

static void maybe_free(struct chan *ch)
{
	if (ch->wrapped || !ch->handle_closed)
		return;
	free(ch->rbuf);
	free(ch);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct chan *ch = (struct chan *)h;
	ch->handle_closed = 1;
	maybe_free(ch);
}

static void drop_queue(struct chan *ch)
{
	struct msg *m, *next;
	for (m = ch->head; m != NULL; m = next) {
		next = m->next;
		if (m->fd >= 0)
			close(m->fd);
		free(m);
	}
	ch->head = ch->tail = NULL;
	ch->queued = 0;
}

/* The native half of closing; the poll must stop before its descriptor closes. */
static void teardown(struct chan *ch)
{
	if (!ch->open)
		return;
	ch->open = 0;
	uv_poll_stop(&ch->poll);
	close(ch->fd);
	ch->fd = -1;
	drop_queue(ch);
	uv_close((uv_handle_t *)&ch->poll, on_handle_closed);
}

/* Lets go of the JavaScript side: the callback, and the strong hold on the object. */
static void release_js(struct chan *ch)
{
	if (ch->cb == NULL)
		return;
	napi_delete_reference(ch->env, ch->cb);
	ch->cb = NULL;
	napi_reference_unref(ch->env, ch->self, NULL);
	napi_async_destroy(ch->env, ch->actx);
	ch->actx = NULL;
}

static void on_poll(uv_poll_t *h, int status, int events);

static void update_poll(struct chan *ch)
{
	int want = UV_READABLE | (ch->head != NULL ? UV_WRITABLE : 0);
	if (!ch->open || want == ch->events)
		return;
	ch->events = want;
	uv_poll_start(&ch->poll, want, on_poll);
}

/* Calls the JavaScript callback; the receiver owns fd from here on. */
static void emit(struct chan *ch, int kind, const unsigned char *data, size_t len, const char *code, int fd)
{
	napi_env env = ch->env;
	napi_handle_scope scope;
	napi_value recv, cb, argv[3], result, exc;

	if (ch->cb == NULL || napi_open_handle_scope(env, &scope) != napi_ok) {
		if (fd >= 0)
			close(fd);
		return;
	}
	napi_get_reference_value(env, ch->self, &recv);
	napi_get_reference_value(env, ch->cb, &cb);
	napi_create_int32(env, kind, &argv[0]);
	if (kind == EV_MESSAGE)
		napi_create_buffer_copy(env, len, data, NULL, &argv[1]);
	else if (code != NULL)
		napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &argv[1]);
	else
		napi_get_undefined(env, &argv[1]);
	napi_create_int32(env, fd, &argv[2]);
	/* make_callback, not call_function: it runs the microtasks and nextTicks the callback queues, as Node's own handles do. */
	if (napi_make_callback(env, ch->actx, recv, cb, 3, argv, &result) == napi_pending_exception &&
	    napi_get_and_clear_last_exception(env, &exc) == napi_ok)
		napi_fatal_exception(env, exc); /* as a throwing event listener does: 'uncaughtException' */
	napi_close_handle_scope(env, scope);
}

/* Closed from the loop's side (peer gone or an I/O error): tell JavaScript, then let go of it. */
static void finish(struct chan *ch, const char *code)
{
	napi_handle_scope scope;
	teardown(ch);
	if (code != NULL)
		emit(ch, EV_ERROR, NULL, 0, code, -1);
	emit(ch, EV_CLOSE, NULL, 0, NULL, -1);
	if (napi_open_handle_scope(ch->env, &scope) == napi_ok) {
		release_js(ch);
		napi_close_handle_scope(ch->env, scope);
	}
}

/* One sendmsg, EINTR retried; 0 or the errno. */
static int send_one(int sock, const unsigned char *data, size_t len, int fd)
{
	struct msghdr m;
	struct iovec iov;
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct cmsghdr *c;
	ssize_t n;

	memset(&m, 0, sizeof(m));
	iov.iov_base = (void *)data;
	iov.iov_len = len;
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	if (fd >= 0) {
		memset(&cm, 0, sizeof(cm));
		m.msg_control = cm.buf;
		m.msg_controllen = sizeof(cm.buf);
		c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	do
		n = sendmsg(sock, &m, SEND_FLAGS);
	while (n < 0 && errno == EINTR);
	return n < 0 ? errno : 0;
}

/* ENOBUFS: OpenBSD's answer when mbufs run short, worth a retry like EAGAIN. */
#define WOULD_BLOCK(e) ((e) == EAGAIN || (e) == EWOULDBLOCK || (e) == ENOBUFS)
#define PEER_GONE(e) ((e) == EPIPE || (e) == ECONNRESET)

static void flush(struct chan *ch)
{
	struct msg *m;
	int err;

	while ((m = ch->head) != NULL) {
		err = send_one(ch->fd, m->data, m->len, m->fd);
		if (WOULD_BLOCK(err))
			break;
		if (PEER_GONE(err)) {
			ch->broken = 1;
			drop_queue(ch);
			break;
		}
		if (err != 0) {
			finish(ch, uv_err_name(-err));
			return;
		}
		ch->head = m->next;
		if (ch->head == NULL)
			ch->tail = NULL;
		ch->queued--;
		if (m->fd >= 0)
			close(m->fd);
		free(m);
	}
	update_poll(ch);
}

static void read_some(struct chan *ch)
{
	int i;

	for (i = 0; i < READS_PER_WAKEUP && ch->open; i++) {
		struct msghdr m;
		struct iovec iov;
		union {
			struct cmsghdr hdr;
			char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
		} cm;
		struct cmsghdr *c;
		int fds[MAX_FDS], nfds = 0, total = 0, foreign = 0, j;
		const char *err = NULL;
		ssize_t n;

		memset(&m, 0, sizeof(m));
		iov.iov_base = ch->rbuf;
		iov.iov_len = MAX_MESSAGE + 1;
		m.msg_iov = &iov;
		m.msg_iovlen = 1;
		m.msg_control = cm.buf;
		m.msg_controllen = sizeof(cm.buf);
		do
			n = recvmsg(ch->fd, &m, RECV_FLAGS);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			if (WOULD_BLOCK(errno))
				return;
			finish(ch, PEER_GONE(errno) ? NULL : uv_err_name(-errno));
			return;
		}

		/* Take every descriptor that came, whatever else is wrong with the message. */
		for (c = m.msg_controllen > 0 ? CMSG_FIRSTHDR(&m) : NULL; c != NULL; c = CMSG_NXTHDR(&m, c)) {
			size_t k, count;
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0)) {
				foreign = 1;
				continue;
			}
			count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (k = 0; k < count; k++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
				total++;
				if (nfds < MAX_FDS)
					fds[nfds++] = fd;
				else
					close(fd);
			}
		}
#ifndef MSG_CMSG_CLOEXEC
		for (j = 0; j < nfds; j++)
			set_cloexec(fds[j]);
#endif

		if (foreign)
			err = "ERR_CHANNEL_CMSG";
		else if (m.msg_flags & MSG_CTRUNC)
			err = "ERR_CHANNEL_CTRUNC";
		else if ((m.msg_flags & MSG_TRUNC) || n > MAX_MESSAGE)
			err = "ERR_CHANNEL_TRUNCATED";
		else if (total > 1)
			err = "ERR_CHANNEL_FDS";
		else if (n == 0 && total > 0)
			err = "ERR_CHANNEL_EMPTY";
		if (err != NULL) {
			for (j = 0; j < nfds; j++)
				close(fds[j]);
			emit(ch, EV_ERROR, NULL, 0, err, -1);
			continue;
		}
		if (n == 0) { /* end of file: a seqpacket peer that closed */
			finish(ch, NULL);
			return;
		}
		emit(ch, EV_MESSAGE, ch->rbuf, (size_t)n, NULL, nfds == 1 ? fds[0] : -1);
	}
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct chan *ch = (struct chan *)h;

	if (!ch->open)
		return;
	if (status < 0) {
		finish(ch, uv_err_name(status));
		return;
	}
	if (events & UV_WRITABLE)
		flush(ch);
	if (ch->open && (events & UV_READABLE))
		read_some(ch);
}

static void finalize(napi_env env, void *data, void *hint)
{
	struct chan *ch = data;
	/* Still open only when the environment goes away: nobody is left to tell. */
	teardown(ch);
	if (ch->cb != NULL)
		napi_delete_reference(env, ch->cb);
	napi_delete_reference(env, ch->self);
	ch->wrapped = 0;
	maybe_free(ch);
}

static struct chan *unwrap(napi_env env, napi_value v)
{
	void *p = NULL;
	if (napi_unwrap(env, v, &p) != napi_ok || p == NULL) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "not a channel handle");
		return NULL;
	}
	return p;
}

/* open(fd, callback): the handle object; the channel owns fd from here on. */
static napi_value js_open(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2], obj, name;
	int32_t fd;
	int type = 0, r;
	socklen_t tl = sizeof(type);
	uv_loop_t *loop;
	struct chan *ch;

	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
	    napi_get_value_int32(env, argv[0], &fd) != napi_ok)
		return NULL;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0)
		return throw_errno(env, "channel", errno);
	if (type != SOCK_SEQPACKET) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "channel: not a SOCK_SEQPACKET socket");
		return NULL;
	}
	if (napi_get_uv_event_loop(env, &loop) != napi_ok)
		return NULL;
	ch = calloc(1, sizeof(*ch));
	if (ch == NULL || (ch->rbuf = malloc(MAX_MESSAGE + 1)) == NULL) {
		free(ch);
		return throw_errno(env, "channel", ENOMEM);
	}
	/* uv_poll_init also sets O_NONBLOCK: the channel never blocks the loop. */
	if ((r = uv_poll_init(loop, &ch->poll, fd)) != 0) {
		free(ch->rbuf);
		free(ch);
		return throw_errno(env, "channel", -r);
	}
	ch->env = env;
	ch->fd = fd;
	ch->open = 1;
	ch->wrapped = 1;
	napi_create_object(env, &obj);
	napi_create_string_utf8(env, "PopdChannel", NAPI_AUTO_LENGTH, &name);
	if (napi_wrap(env, obj, ch, finalize, NULL, NULL) != napi_ok ||
	    napi_create_reference(env, obj, 1, &ch->self) != napi_ok ||
	    napi_create_reference(env, argv[1], 1, &ch->cb) != napi_ok ||
	    napi_async_init(env, obj, name, &ch->actx) != napi_ok) {
		/* Cannot happen short of V8 running out of memory; the finalizer frees what was made. */
		teardown(ch);
		return NULL;
	}
	update_poll(ch);
	return obj;
}

/* send(handle, buffer, fd or -1): false when closed or the queue is full. */
static napi_value js_send(napi_env env, napi_callback_info info)
{
	size_t argc = 3, len;
	napi_value argv[3], res;
	void *data;
	int32_t fd;
	int dup = -1, err;
	struct chan *ch;
	struct msg *m;

	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
	    (ch = unwrap(env, argv[0])) == NULL ||
	    napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok ||
	    napi_get_value_int32(env, argv[2], &fd) != napi_ok)
		return NULL;
	if (len == 0 || len > MAX_MESSAGE) {
		napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "channel: message length out of range");
		return NULL;
	}
	if (!ch->open || ch->broken || ch->queued >= MAX_QUEUE) {
		napi_get_boolean(env, 0, &res);
		return res;
	}
	/* Our own copy, so the caller may close theirs at once; ours closes once sent. */
	if (fd >= 0 && (dup = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0)
		return throw_errno(env, "channel send", errno);
	err = ch->head == NULL ? send_one(ch->fd, data, len, dup) : EAGAIN;
	if (err == 0 || PEER_GONE(err)) {
		if (dup >= 0)
			close(dup);
		if (err != 0) {
			ch->broken = 1;
			drop_queue(ch);
		}
		napi_get_boolean(env, err == 0, &res);
		return res;
	}
	if (!WOULD_BLOCK(err)) {
		if (dup >= 0)
			close(dup);
		return throw_errno(env, "channel send", err);
	}
	m = malloc(sizeof(*m) + len);
	if (m == NULL) {
		if (dup >= 0)
			close(dup);
		return throw_errno(env, "channel send", ENOMEM);
	}
	m->next = NULL;
	m->fd = dup;
	m->len = len;
	memcpy(m->data, data, len);
	if (ch->tail != NULL)
		ch->tail->next = m;
	else
		ch->head = m;
	ch->tail = m;
	ch->queued++;
	update_poll(ch);
	napi_get_boolean(env, 1, &res);
	return res;
}

static napi_value js_handle_op(napi_env env, napi_callback_info info, int op)
{
	size_t argc = 1;
	napi_value argv[1];
	struct chan *ch;

	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
	    (ch = unwrap(env, argv[0])) == NULL)
		return NULL;
	if (op == 0) {
		teardown(ch);
		release_js(ch);
	} else if (ch->open) {
		if (op == 1)
			uv_ref((uv_handle_t *)&ch->poll);
		else
			uv_unref((uv_handle_t *)&ch->poll);
	}
	return NULL;
}

/* pending(handle): messages queued and not yet sent (0 once closed). */
static napi_value js_pending(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], res;
	struct chan *ch;

	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
	    (ch = unwrap(env, argv[0])) == NULL)
		return NULL;
	napi_create_uint32(env, ch->open ? ch->queued : 0, &res);
	return res;
}

static napi_value js_close(napi_env env, napi_callback_info info) { return js_handle_op(env, info, 0); }
static napi_value js_ref(napi_env env, napi_callback_info info) { return js_handle_op(env, info, 1); }
static napi_value js_unref(napi_env env, napi_callback_info info) { return js_handle_op(env, info, 2); }

static void grow_buffer(int fd, int opt)
{
	int size = 0;
	socklen_t sl = sizeof(size);
	/* Only ever raised: Linux's default is already larger, and lowering it would cost throughput. */
	if (getsockopt(fd, SOL_SOCKET, opt, &size, &sl) == 0 && size < SOCKBUF) {
		size = SOCKBUF;
		setsockopt(fd, SOL_SOCKET, opt, &size, sizeof(size));
	}
}

/* socketpair(seqpacket): two close-on-exec ends. */
static napi_value js_socketpair(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], arr, v;
	bool seq;
	int sv[2], type, i;

	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
	    napi_get_value_bool(env, argv[0], &seq) != napi_ok)
		return NULL;
	type = seq ? SOCK_SEQPACKET : SOCK_STREAM;
#ifdef SOCK_CLOEXEC
	if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0)
		return throw_errno(env, "socketpair", errno);
#else
	if (socketpair(AF_UNIX, type, 0, sv) < 0)
		return throw_errno(env, "socketpair", errno);
	if (set_cloexec(sv[0]) < 0 || set_cloexec(sv[1]) < 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		return throw_errno(env, "socketpair", e);
	}
#endif
	if (seq) {
		for (i = 0; i < 2; i++) {
			grow_buffer(sv[i], SO_SNDBUF);
			grow_buffer(sv[i], SO_RCVBUF);
		}
	}
	napi_create_array_with_length(env, 2, &arr);
	for (i = 0; i < 2; i++) {
		napi_create_int32(env, sv[i], &v);
		napi_set_element(env, arr, i, v);
	}
	return arr;
}

static int in_keep(int fd, const int32_t *keep, uint32_t nkeep)
{
	uint32_t i;
	for (i = 0; i < nkeep; i++)
		if (keep[i] == fd)
			return 1;
	return 0;
}

/*
 * Inherited: without FD_CLOEXEC (Node opens its own with it), or a file or a
 * directory whatever its flag (Node holds none as it starts, but marks 0 to
 * 15 close-on-exec itself, so a leaked file that low is told apart only by
 * its type).
 */
static int close_if_inherited(int fd, const int32_t *keep, uint32_t nkeep)
{
	struct stat st;
	int fl;
	if (fd < 3 || in_keep(fd, keep, nkeep) || (fl = fcntl(fd, F_GETFD)) < 0)
		return 0;
	if ((fl & FD_CLOEXEC) && (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))))
		return 0;
	close(fd);
	return 1;
}

/* closeInherited(keep): how many descriptors it closed. */
static napi_value js_close_inherited(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], v, res;
	uint32_t nkeep = 0, i;
	int32_t *keep;
	int closed = 0;
	DIR *d;

	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
	    napi_get_array_length(env, argv[0], &nkeep) != napi_ok)
		return NULL;
	keep = calloc(nkeep + 1, sizeof(*keep));
	if (keep == NULL)
		return throw_errno(env, "closeInherited", ENOMEM);
	for (i = 0; i < nkeep; i++) {
		if (napi_get_element(env, argv[0], i, &v) != napi_ok || napi_get_value_int32(env, v, &keep[i]) != napi_ok) {
			free(keep);
			return NULL;
		}
	}
	/* Where /proc lists the open descriptors, only those are looked at; elsewhere every possible one. */
	if ((d = opendir("/proc/self/fd")) != NULL) {
		int *fds = NULL, nfds = 0, cap = 0, self = dirfd(d), k;
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			char *end;
			long fd = strtol(e->d_name, &end, 10);
			if (e->d_name[0] == '.' || *end != '\0' || fd == self)
				continue;
			if (nfds == cap) {
				int *grown = realloc(fds, (cap = cap ? 2 * cap : 64) * sizeof(*fds));
				if (grown == NULL)
					break;
				fds = grown;
			}
			fds[nfds++] = (int)fd;
		}
		closedir(d);
		for (k = 0; k < nfds; k++)
			closed += close_if_inherited(fds[k], keep, nkeep);
		free(fds);
	} else {
		long max = sysconf(_SC_OPEN_MAX), fd;
		for (fd = 3; fd < max; fd++)
			closed += close_if_inherited((int)fd, keep, nkeep);
	}
	free(keep);
	napi_create_int32(env, closed, &res);
	return res;
}

NAPI_MODULE_INIT()
{
	static const struct {
		const char *name;
		napi_callback fn;
	} fns[] = {
		{ "open", js_open },
		{ "send", js_send },
		{ "close", js_close },
		{ "ref", js_ref },
		{ "unref", js_unref },
		{ "pending", js_pending },
		{ "socketpair", js_socketpair },
		{ "closeInherited", js_close_inherited },
	};
	napi_value v;
	size_t i;

	for (i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &v) != napi_ok ||
		    napi_set_named_property(env, exports, fns[i].name, v) != napi_ok)
			return NULL;
	}
	napi_create_int32(env, MAX_MESSAGE, &v);
	napi_set_named_property(env, exports, "MAX_MESSAGE", v);
	napi_create_int32(env, MAX_QUEUE, &v);
	napi_set_named_property(env, exports, "MAX_QUEUE", v);
	return exports;
}
