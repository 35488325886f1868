// posix (node-posix) ships no types; only the calls the project uses are declared.
declare module 'posix' {
  export interface Passwd { name: string; passwd: string; uid: number; gid: number; gecos: string; shell: string; dir: string }
  export function chroot(path: string): void;
  export function getpwnam(user: string | number): Passwd;
  export function openlog(ident: string, options: { pid?: boolean; ndelay?: boolean; cons?: boolean; odelay?: boolean; nowait?: boolean }, facility: string): void;
  export function syslog(priority: string, message: string): void;
  export function closelog(): void;
  export function setrlimit(resource: string, limits: { soft?: number | null; hard?: number | null }): void;
  export function getrlimit(resource: string): { soft: number | null; hard: number | null };
}
