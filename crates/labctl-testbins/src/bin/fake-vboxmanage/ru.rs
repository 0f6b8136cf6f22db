//! Human-readable messages in VirtualBox's Russian translation
//! (src/VBox/Frontends/VBoxManage/nls/VBoxManageNls_ru.ts, contexts Snapshot, Misc, HostOnly,
//! List). `getextradata`'s `Value:` was not looked up: it is marked `[ru]` so that it is still
//! not English.

/// VBoxManageSnapshot.cpp:530 "This machine does not have any snapshots"
pub const NO_SNAPSHOTS: &str = "У этой машины нет снимков";
/// VBoxManageSnapshot.cpp:493 "Snapshot taken. UUID: %ls"
pub const SNAPSHOT_TAKEN: &str = "Снимок сделан. UUID:";
/// VBoxManageSnapshot.cpp:549-550 "%s snapshot '%ls' (%ls)", Restoring / Deleting
pub const RESTORING: &str = "Восстановление снимка";
pub const DELETING: &str = "Удаление снимка";
/// VBoxManageMisc.cpp:2670 "Waiting for VM '%ls' to power on..."
pub const WAITING: (&str, &str) = ("Ожидание запуска ВМ '", "'...");
/// VBoxManageMisc.cpp:2685 "VM '%ls' (%ls) has been successfully started."
pub const STARTED: &str = "успешно запущена.";
/// VBoxManageHostonly.cpp:114 "Interface '%ls' was successfully created"
pub const IF_CREATED: (&str, &str) = ("Интерфейс '", "' успешно создан");
