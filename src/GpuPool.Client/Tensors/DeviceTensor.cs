namespace GpuPool.Client.Tensors;

public enum ElementType
{
    Float32,
    Int32,
}

/// <summary>
/// A row-major matrix (or vector, with one row) in a device's memory (a session's, or any <see cref="IDeviceOps"/>). A tensor made by
/// <see cref="AllocAsync"/> owns its memory; a <see cref="Rows"/> view borrows its parent's.
/// </summary>
public sealed class DeviceTensor : IAsyncDisposable
{
    private readonly bool _owner;

    private DeviceTensor(IDeviceOps device, DevicePtr ptr, int rows, int cols, ElementType type, bool owner)
    {
        Device = device;
        Ptr = ptr;
        RowCount = rows;
        Cols = cols;
        Type = type;
        _owner = owner;
    }

    public IDeviceOps Device { get; }

    public DevicePtr Ptr { get; }

    public int RowCount { get; }

    public int Cols { get; }

    public ElementType Type { get; }

    public long Length => (long)RowCount * Cols;

    public ulong Bytes => (ulong)Length * 4;

    public static async Task<DeviceTensor> AllocAsync(IDeviceOps device, int rows, int cols, ElementType type = ElementType.Float32, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(cols, 1);
        var ptr = await device.AllocAsync((ulong)rows * (ulong)cols * 4, cancellationToken).ConfigureAwait(false);
        return new DeviceTensor(device, ptr, rows, cols, type, owner: true);
    }

    /// <summary>A view of rows [start, start+count) sharing this tensor's memory.</summary>
    public DeviceTensor Rows(int start, int count)
    {
        if (start < 0 || count < 1 || start + count > RowCount)
        {
            throw new ArgumentOutOfRangeException(nameof(count), $"rows [{start}, {start + count}) are outside a tensor of {RowCount} rows");
        }

        return new DeviceTensor(Device, Ptr + ((ulong)start * (ulong)Cols * 4), count, Cols, Type, owner: false);
    }

    public ValueTask UploadAsync(float[] values, CancellationToken cancellationToken = default)
        => Upload(values, ElementType.Float32, cancellationToken);

    public ValueTask UploadAsync(int[] values, CancellationToken cancellationToken = default)
        => Upload(values, ElementType.Int32, cancellationToken);

    public Task<float[]> DownloadAsync(CancellationToken cancellationToken = default)
        => Device.CopyToHostAsync<float>(Ptr, checked((int)Length), cancellationToken: cancellationToken);

    public Task<int[]> DownloadInt32Async(CancellationToken cancellationToken = default)
        => Device.CopyToHostAsync<int>(Ptr, checked((int)Length), cancellationToken: cancellationToken);

    private ValueTask Upload<T>(T[] values, ElementType type, CancellationToken cancellationToken)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Length != Length || type != Type)
        {
            throw new ArgumentException($"uploading {values.Length} {type} values into a {RowCount}x{Cols} {Type} tensor");
        }

        return Device.CopyToDeviceAsync(Ptr, values, cancellationToken: cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        if (_owner)
        {
            try
            {
                await Device.FreeAsync(Ptr).ConfigureAwait(false);
            }
            catch (Protocol.Errors.GpuPoolException)
            {
                // The session or lease is gone, and with it the memory.
            }
        }
    }
}
