#!/usr/bin/env python3
"""Prints TCP_NODELAY (0 or 1) of another process's socket: pid and socket
inode on the command line. As root it takes a copy of the descriptor with
pidfd_getfd(2) (Linux 5.6), so the option is read from the real socket the
process uses, not inferred."""
import ctypes
import os
import socket
import sys

SYS_PIDFD_OPEN = 434
SYS_PIDFD_GETFD = 438

pid, inode = int(sys.argv[1]), sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
target = next(int(fd) for fd in os.listdir(f'/proc/{pid}/fd') if os.readlink(f'/proc/{pid}/fd/{fd}') == f'socket:[{inode}]')
pidfd = libc.syscall(SYS_PIDFD_OPEN, pid, 0)
if pidfd < 0:
    sys.exit(f'pidfd_open: {os.strerror(ctypes.get_errno())}')
fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, target, 0)
if fd < 0:
    sys.exit(f'pidfd_getfd: {os.strerror(ctypes.get_errno())}')
s = socket.socket(fileno=fd)
print(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
