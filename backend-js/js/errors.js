// The errors of the backend-js package: every failed call throws (or rejects with) a
// BackendError, an Error whose `kind` says what went wrong. Each kind has its own
// subclass, so `e instanceof InvalidArgumentError` and `e.kind === "InvalidArgument"`
// are the same test.

export class BackendError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = kind.endsWith("Error") ? kind : `${kind}Error`;
    this.kind = kind;
  }
}

/** An argument is wrong: a pointer outside its allocation, a bad shape, a stale slice. */
export class InvalidArgumentError extends BackendError {
  constructor(message) {
    super("InvalidArgument", message);
  }
}

/** The backend, the adapter or the browser cannot do this. */
export class UnsupportedError extends BackendError {
  constructor(message) {
    super("Unsupported", message);
  }
}

/** Device memory, an arena or the module's memory is exhausted. */
export class OutOfMemoryError extends BackendError {
  constructor(message) {
    super("OutOfMemory", message);
  }
}

/** The device failed (lost, or an error in queued work). */
export class DeviceError extends BackendError {
  constructor(message) {
    super("DeviceError", message);
  }
}

/** A call before the backend was initialised. */
export class NotInitializedError extends BackendError {
  constructor(message) {
    super("NotInitialized", message);
  }
}

/** Used by the module to build its errors. */
export function makeError(kind, message) {
  switch (kind) {
    case "InvalidArgument":
      return new InvalidArgumentError(message);
    case "Unsupported":
      return new UnsupportedError(message);
    case "OutOfMemory":
      return new OutOfMemoryError(message);
    case "DeviceError":
      return new DeviceError(message);
    case "NotInitialized":
      return new NotInitializedError(message);
    default:
      return new BackendError(kind, message);
  }
}
