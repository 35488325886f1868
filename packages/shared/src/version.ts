// identity: root, the recipient, the admin
export const VERSION = '0.1.0';
