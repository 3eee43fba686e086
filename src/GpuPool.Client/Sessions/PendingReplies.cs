using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.Threading.Tasks.Sources;
using GpuPool.Client.Transport;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.Client;

/// <summary>
/// The replies a session waits for, by sequence number. A reply first updates its waiter, which says whether the op is
/// decided; whoever then takes the waiter out of the table — the reply's reader, the error that fails it, the caller's
/// cancellation, the session's end — completes it, so it completes exactly once. Waiters completed by their reply go
/// back to the table's spares once their caller has read the outcome, so a call allocates nothing once the session has
/// warmed up; one taken by a cancellation or the session's end is left to the GC, since a reader may still hold it.
/// </summary>
internal sealed class PendingReplies
{
    private readonly object _gate = new();
    private readonly Dictionary<ulong, Pending> _bySeq = [];
    private readonly Stack<ValueReply> _spareValues = new();
    private readonly Stack<CopyReply> _spareCopies = new();

    /// <summary>A waiter for one op's value.</summary>
    public ValueReply RentValue()
    {
        lock (_gate)
        {
            return _spareValues.TryPop(out var reply) ? reply : new ValueReply(this);
        }
    }

    /// <summary>A waiter that assembles a copy to the host into <paramref name="destination"/>.</summary>
    public CopyReply RentCopy(Memory<byte> destination, bool striped)
    {
        CopyReply? reply;
        lock (_gate)
        {
            _spareCopies.TryPop(out reply);
        }

        reply ??= new CopyReply(this);
        reply.Prepare(destination, striped);
        return reply;
    }

    public void Add(ulong seq, Pending pending)
    {
        pending.Seq = seq;
        lock (_gate)
        {
            _bySeq[seq] = pending;
        }
    }

    public bool TryGet(ulong seq, [NotNullWhen(true)] out Pending? pending)
    {
        lock (_gate)
        {
            return _bySeq.TryGetValue(seq, out pending);
        }
    }

    public bool TryTake(ulong seq, [NotNullWhen(true)] out Pending? pending)
    {
        lock (_gate)
        {
            return _bySeq.Remove(seq, out pending);
        }
    }

    /// <summary>Takes <paramref name="pending"/> out if it is still the one waiting under <paramref name="seq"/>.</summary>
    public bool TryTake(ulong seq, Pending pending)
    {
        lock (_gate)
        {
            if (!_bySeq.TryGetValue(seq, out var found) || !ReferenceEquals(found, pending))
            {
                return false;
            }

            _bySeq.Remove(seq);
            return true;
        }
    }

    /// <summary>Takes every waiter out (the session is over).</summary>
    public List<Pending> TakeAll()
    {
        lock (_gate)
        {
            var all = _bySeq.Values.ToList();
            _bySeq.Clear();
            return all;
        }
    }

    /// <summary>The striped copies waiting now, with their sequence numbers (a data connection closed).</summary>
    public List<(ulong Seq, CopyReply Copy)> StripedCopies()
    {
        lock (_gate)
        {
            return [.. _bySeq.Where(p => p.Value is CopyReply { Striped: true }).Select(p => (p.Key, (CopyReply)p.Value))];
        }
    }

    internal void Return(ValueReply reply)
    {
        lock (_gate)
        {
            _spareValues.Push(reply);
        }
    }

    internal void Return(CopyReply reply)
    {
        lock (_gate)
        {
            _spareCopies.Push(reply);
        }
    }
}

/// <summary>Someone waiting for an op's reply.</summary>
internal abstract class Pending
{
    /// <summary>The op's sequence number, once submitted.</summary>
    public ulong Seq { get; set; }

    /// <summary>Takes the op's reply value; true when that decides the op.</summary>
    public virtual bool OnValue(in ReplyValue value) => Decide(new GpuPoolException(ErrorCode.Internal, "the broker answered a copy with a value"));

    /// <summary>Takes a chunk of copy data; true when that decides the op.</summary>
    public virtual bool OnData(ulong offset, in ReadOnlySequence<byte> bytes, bool last) => Decide(new GpuPoolException(ErrorCode.Internal, "the broker answered an op with copy data"));

    /// <summary>Records a failure as the op's outcome; true.</summary>
    protected abstract bool Decide(Exception error);

    /// <summary>Completes the waiter with its decided outcome (by the one who took it out of the table).</summary>
    public abstract void Finish();

    /// <summary>Completes the waiter with <paramref name="error"/>; <paramref name="reusable"/> when no reader can still hold it.</summary>
    public abstract void Fail(Exception error, bool reusable);
}

/// <summary>A reusable waiter: its caller awaits <see cref="Wait"/> once, after which it may go back to its table's spares.</summary>
internal abstract class PooledPending<T>(PendingReplies table) : Pending, IValueTaskSource<T>
{
    private ManualResetValueTaskSourceCore<T> _core = new() { RunContinuationsAsynchronously = true };
    private CancellationTokenRegistration _cancel;
    private bool _reusable;

    protected PendingReplies Table => table;

    /// <summary>What the caller awaits: the outcome, or cancellation (the op itself goes on; its reply is dropped).</summary>
    public ValueTask<T> Wait(CancellationToken cancellationToken)
    {
        if (cancellationToken.CanBeCanceled)
        {
            _cancel = cancellationToken.UnsafeRegister(static (state, token) => ((PooledPending<T>)state!).Cancel(token), this);
        }

        return new ValueTask<T>(this, _core.Version);
    }

    protected void Succeed(T result)
    {
        _reusable = true;
        _core.SetResult(result);
    }

    public override void Fail(Exception error, bool reusable)
    {
        _reusable = reusable;
        _core.SetException(error);
    }

    private void Cancel(CancellationToken token)
    {
        if (table.TryTake(Seq, this))
        {
            Fail(new OperationCanceledException(token), reusable: false);
        }
    }

    public T GetResult(short token)
    {
        try
        {
            return _core.GetResult(token);
        }
        finally
        {
            _cancel.Dispose();
            _cancel = default;
            if (_reusable)
            {
                _core.Reset();
                Recycle();
            }
        }
    }

    /// <summary>Goes back to the table's spares: nobody refers to it any more.</summary>
    protected abstract void Recycle();

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => _core.OnCompleted(continuation, state, token, flags);
}

/// <summary>Waits for one op's value (a pointer, a handle, done).</summary>
internal sealed class ValueReply(PendingReplies table) : PooledPending<ReplyValue>(table)
{
    private ReplyValue _value;
    private Exception? _error;

    public override bool OnValue(in ReplyValue value)
    {
        _value = value;
        return true;
    }

    protected override bool Decide(Exception error)
    {
        _error = error;
        return true;
    }

    public override void Finish()
    {
        if (_error is { } error)
        {
            _error = null;
            Fail(error, reusable: true);
        }
        else
        {
            Succeed(_value);
        }
    }

    protected override void Recycle() => Table.Return(this);
}

/// <summary>
/// Assembles the chunks of a device-to-host copy into the caller's buffer. A striped copy's chunks arrive on several
/// connections at once, in any order, and the broker says, once it has sent them all, which connections carried them:
/// the copy is whole when that word has come and so have all its bytes. A connection that closes fails the copy if it
/// carried some of it and bytes are missing.
/// </summary>
internal sealed class CopyReply(PendingReplies table) : PooledPending<bool>(table)
{
    private readonly object _gate = new();
    private Memory<byte> _destination;
    private bool _striped;
    private long _received;
    private uint _closed;
    private uint? _carriedBy;
    private GpuPoolException? _closedBecause;
    private Exception? _error;

    public bool Striped => _striped;

    public void Prepare(Memory<byte> destination, bool striped)
    {
        _destination = destination;
        _striped = striped;
        _received = 0;
        _closed = 0;
        _carriedBy = null;
        _closedBecause = null;
        _error = null;
    }

    protected override void Recycle()
    {
        _destination = default;
        Table.Return(this);
    }

    protected override bool Decide(Exception error)
    {
        lock (_gate)
        {
            _error ??= error;
        }

        return true;
    }

    public override void Finish()
    {
        if (_error is { } error)
        {
            // A striped copy can fail while another connection's reader still holds it (a chunk on its way in): only
            // one that completed, which every reader has finished with, is reused.
            Fail(error, reusable: !_striped);
        }
        else
        {
            Succeed(true);
        }
    }

    public override bool OnData(ulong offset, in ReadOnlySequence<byte> bytes, bool last)
    {
        if (offset + (ulong)bytes.Length > (ulong)_destination.Length)
        {
            return Decide(new GpuPoolException(ErrorCode.Internal, "the broker sent copy data outside the requested range"));
        }

        bytes.CopyTo(_destination.Span[(int)offset..]);
        return Received((int)bytes.Length, last);
    }

    /// <summary>The part of the caller's buffer a chunk covers, for the chunk to be received into; empty when it does not fit.</summary>
    public Memory<byte> Destination(ulong offset, int length)
        => offset + (ulong)length <= (ulong)_destination.Length ? _destination.Slice((int)offset, length) : Memory<byte>.Empty;

    /// <summary>Counts a chunk that is in the caller's buffer; true when that decides the copy.</summary>
    public bool Received(int length, bool last)
    {
        var received = Interlocked.Add(ref _received, length);
        if (_striped)
        {
            return Check();
        }

        if (!last)
        {
            return false;
        }

        return received == _destination.Length || Decide(new GpuPoolException(ErrorCode.Internal, $"the copy ended after {received} of {_destination.Length} bytes"));
    }

    /// <summary>A striped copy's last word: the connections that carried it.</summary>
    public override bool OnValue(in ReplyValue value)
    {
        if (!_striped)
        {
            return base.OnValue(value);
        }

        lock (_gate)
        {
            _carriedBy = (uint)value.Value;
        }

        return Check();
    }

    /// <summary>Data connection <paramref name="lane"/> closed; true when that decides this copy.</summary>
    public bool LaneClosed(int lane, GpuPoolException error)
    {
        lock (_gate)
        {
            _closed |= 1u << lane;
            _closedBecause ??= error;
        }

        return Check();
    }

    /// <summary>Whether the copy is decided: all its bytes and its last word have come, or it cannot complete.</summary>
    private bool Check()
    {
        lock (_gate)
        {
            var received = Interlocked.Read(ref _received);
            if (received > _destination.Length)
            {
                _error ??= new GpuPoolException(ErrorCode.Internal, $"the broker sent {received} bytes for a copy of {_destination.Length}");
                return true;
            }

            if (_carriedBy is { } carried && received == _destination.Length)
            {
                return true;
            }

            // Before the last word a closed connection may not have been used; after it, one that was fails the copy.
            var missingFrom = _carriedBy is { } used ? used & _closed : 0;
            if (missingFrom == 0)
            {
                return false;
            }

            var lane = System.Numerics.BitOperations.TrailingZeroCount(missingFrom);
            _error ??= new GpuPoolException(
                ErrorCode.Unavailable,
                $"copy #{Seq} of {_destination.Length} bytes to the host failed: data connection {lane} closed after {received} of {_destination.Length} bytes had arrived ({_closedBecause?.Message})",
                Seq,
                "memcpy_dtoh",
                _closedBecause);
            return true;
        }
    }
}
