// identity: root
/** A worker thread of popd that computes bcrypt hashes, so that popd's event loop never runs a bcrypt round. */
import { parentPort } from 'node:worker_threads';
import bcrypt from 'bcryptjs';

export interface HashJob {
  pass: string;
  salt: string;
}

parentPort!.on('message', (job: HashJob) => {
  let hash = '';
  try {
    hash = bcrypt.hashSync(job.pass, job.salt);
  } catch {
    // A salt bcryptjs refuses matches nothing: '' never equals a stored hash.
  }
  parentPort!.postMessage(hash);
});
