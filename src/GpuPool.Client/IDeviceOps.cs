namespace GpuPool.Client;

/// <summary>
/// The device operations the tensor layer (<see cref="Tensors.TensorOps"/>, <see cref="Tensors.DeviceTensor"/>) and
/// models built on it need: memory, copies, the built-in kernels, launches and a synchronize. A
/// <see cref="DeviceSession"/> is one; so can be anything else that runs the built-in kernels, such as a device
/// context in the same process, which is how the training benchmark compares the two on one model.
/// </summary>
/// <remarks>
/// The contract is the session's: launches and copies to the device are fire-and-forget and run in order, a failure
/// of one surfaces at the next synchronizing call (<see cref="SynchronizeAsync"/> or a copy to the host), and a copy
/// to the device has taken its bytes when it returns.
/// </remarks>
public interface IDeviceOps
{
    Task<DevicePtr> AllocAsync(ulong bytes, CancellationToken cancellationToken = default);

    /// <summary>Frees an allocation once the work queued before it has run.</summary>
    Task FreeAsync(DevicePtr ptr, CancellationToken cancellationToken = default);

    ValueTask CopyToDeviceAsync<T>(DevicePtr dst, T[] source, DeviceStream stream = default, CancellationToken cancellationToken = default)
        where T : unmanaged;

    Task<T[]> CopyToHostAsync<T>(DevicePtr src, int count, DeviceStream stream = default, CancellationToken cancellationToken = default)
        where T : unmanaged;

    Task<DeviceModule> LoadBuiltinModuleAsync(CancellationToken cancellationToken = default);

    Task<KernelFunction> GetFunctionAsync(DeviceModule module, string name, CancellationToken cancellationToken = default);

    ValueTask LaunchAsync(KernelFunction function, Dim3 grid, Dim3 block, KernelArgs args, DeviceStream stream = default, uint sharedMemBytes = 0, CancellationToken cancellationToken = default);

    ValueTask SynchronizeAsync(CancellationToken cancellationToken = default);
}
