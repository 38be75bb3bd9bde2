/** What went wrong, as the Rust trait's `BackendError` names it. */
export type ErrorKind =
  | "InvalidArgument"
  | "Unsupported"
  | "OutOfMemory"
  | "DeviceError"
  | "NotInitialized";

/** Every error the package throws or rejects with. */
export class BackendError extends Error {
  constructor(kind: ErrorKind, message: string);
  readonly kind: ErrorKind;
}
/** An argument is wrong: a pointer outside its allocation, a bad shape, a stale slice. */
export class InvalidArgumentError extends BackendError {
  constructor(message: string);
  readonly kind: "InvalidArgument";
}
/** The backend, the adapter or the browser cannot do this. */
export class UnsupportedError extends BackendError {
  constructor(message: string);
  readonly kind: "Unsupported";
}
/** Device memory, an arena or the module's memory is exhausted. */
export class OutOfMemoryError extends BackendError {
  constructor(message: string);
  readonly kind: "OutOfMemory";
}
/** The device failed (lost, or an error in queued work). */
export class DeviceError extends BackendError {
  constructor(message: string);
  readonly kind: "DeviceError";
}
/** A call before the backend was initialised. */
export class NotInitializedError extends BackendError {
  constructor(message: string);
  readonly kind: "NotInitialized";
}
export function makeError(kind: ErrorKind, message: string): BackendError;
