"""The iris-sweep flow and the task runner it runs its tasks on."""
