// Named errors for bytes that arrive from the network. Every one carries a stable `code` so the
// mesh can count, report and test them without matching message text.

export type FrameErrorCode =
  | 'ERR_FRAME_TRUNCATED'
  | 'ERR_FRAME_MAGIC'
  | 'ERR_FRAME_VERSION'
  | 'ERR_FRAME_TYPE'
  | 'ERR_FRAME_HEADER_CRC'
  | 'ERR_FRAME_FIELD'
  | 'ERR_FRAME_TOO_LARGE'
  | 'ERR_FRAME_RUN'
  | 'ERR_FRAME_CONFIG'
  | 'ERR_FRAME_SENDER'
  | 'ERR_FRAME_INCONSISTENT'
  | 'ERR_FRAME_MISSING_CHUNK'
  | 'ERR_FRAME_CHECKSUM'
  | 'ERR_FRAME_SIZE'
  | 'ERR_FRAME_DTYPE'
  | 'ERR_MESSAGE_INVALID';

/**
 * The one base of Murmur's named errors: a stable `code` callers branch on (messages may
 * change), the class's own name, and the cause kept. The mesh (SyncError), the wire (FrameError)
 * and the headless volunteer (VolunteerError) each narrow `code` to their own list.
 */
export class CodedError<Code extends string = string> extends Error {
  readonly code: Code;
  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Base class: a frame or message that must not be used. */
export class FrameError extends CodedError<FrameErrorCode> {}

/** Fewer bytes than the header or declared payload needs. */
export class TruncatedFrameError extends FrameError {
  constructor(message: string) { super('ERR_FRAME_TRUNCATED', message); }
}
/** Not a Murmur frame at all (wrong magic) or a type this version does not know. */
export class BadMagicError extends FrameError {
  constructor(got: number) { super('ERR_FRAME_MAGIC', `not a Murmur frame: magic 0x${got.toString(16).padStart(8, '0')}`); }
}
export class VersionError extends FrameError {
  constructor(got: number, want: number) {
    super('ERR_FRAME_VERSION', `frame version ${got} is not supported (this peer speaks version ${want}); update the page`);
  }
}
export class FrameTypeError extends FrameError {
  constructor(got: number) { super('ERR_FRAME_TYPE', `unknown frame type ${got}`); }
}
/** The header's own checksum failed: a field may be corrupt, so nothing in it can be trusted. */
export class HeaderChecksumError extends FrameError {
  constructor(got: number, want: number) {
    super('ERR_FRAME_HEADER_CRC', `frame header checksum 0x${got.toString(16)} != computed 0x${want.toString(16)}`);
  }
}
/** A header field out of its range (unknown kind or dtype, chunk index past the count, ...). */
export class FieldError extends FrameError {
  constructor(message: string) { super('ERR_FRAME_FIELD', message); }
}
export class FrameTooLargeError extends FrameError {
  constructor(bytes: number, max: number) { super('ERR_FRAME_TOO_LARGE', `frame of ${bytes} bytes exceeds the ${max}-byte limit`); }
}
/** Frame of another run, another configuration, or claiming to come from another peer. */
export class RunMismatchError extends FrameError {
  constructor(got: string, want: string) { super('ERR_FRAME_RUN', `frame is for run "${got}", this peer is in run "${want}"`); }
}
export class ConfigMismatchError extends FrameError {
  constructor(got: string, want: string) {
    super('ERR_FRAME_CONFIG', `frame has config hash ${got}, this run's is ${want}: the peers train different models or settings`);
  }
}
export class SenderMismatchError extends FrameError {
  constructor(got: string, want: string) { super('ERR_FRAME_SENDER', `frame claims sender "${got}" but arrived from "${want}"`); }
}
/** A chunk whose fixed fields differ from earlier chunks of the same transfer. */
export class InconsistentChunkError extends FrameError {
  constructor(message: string) { super('ERR_FRAME_INCONSISTENT', message); }
}
/** A chunk arrived after a later one on an ordered channel: one was dropped. */
export class MissingChunkError extends FrameError {
  constructor(message: string) { super('ERR_FRAME_MISSING_CHUNK', message); }
}
/** The assembled tensor does not match the checksum its sender computed. */
export class ChecksumError extends FrameError {
  constructor(got: number, want: number) {
    super('ERR_FRAME_CHECKSUM', `tensor checksum 0x${got.toString(16)} != declared 0x${want.toString(16)}: corrupted in transit`);
  }
}
/** Element count or byte length that does not fit the run's tensors or the declared dtype. */
export class SizeError extends FrameError {
  constructor(message: string) { super('ERR_FRAME_SIZE', message); }
}
/** A control message that is not valid JSON or does not match its schema. */
export class MessageError extends FrameError {
  constructor(message: string, options?: { cause?: unknown }) { super('ERR_MESSAGE_INVALID', message, options); }
}
