// identity: root
/** popd's helper programs, found beside popd in the packages/<role>/dist layout (the repository and the npm tarball alike). */
import path from 'node:path';

export const AUTHPOP = path.resolve(__dirname, '..', '..', 'authpop', 'dist', 'main.js');
export const WRKRPOP = path.resolve(__dirname, '..', '..', 'wrkrpop', 'dist', 'main.js');
