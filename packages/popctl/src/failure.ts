// identity: the admin
/** A failure with its sysexits code; main prints its message and exits with it. */
export class Failure extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}
